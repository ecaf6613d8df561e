"""Finetuning vocabulary policy: keep the checkpoint's tokenizer, and never train on [UNK].

WordPiece splits an unseen word into known pieces, so new words are rarely a problem; a word
becomes [UNK] only when it holds a character the tokenizer never saw ("über", "♫"). A model
trained on such captions would learn to write [UNK], so finetuning refuses them unless told to
grow the vocabulary: each new word becomes one added token whose embedding (and output row)
starts at the mean of the existing ones.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

import torch
from tokenizers import AddedToken

from edge_dac.errors import EdgeDacError
from edge_dac.model.captioner import Captioner
from edge_dac.model.tokenizer import UNK, CaptionTokenizer


def unknown_words(tokenizer: CaptionTokenizer, captions: Iterable[str]) -> Counter:
    """Caption words (as the tokenizer splits and normalises them) that it maps to [UNK], with counts."""
    backend = tokenizer.backend_tokenizer
    unk_id = tokenizer.convert_tokens_to_ids(UNK)
    words: Counter = Counter()
    for caption in captions:
        text = backend.normalizer.normalize_str(caption) if backend.normalizer else caption
        words.update(word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text))
    return Counter({w: n for w, n in words.items() if unk_id in tokenizer.encode(w, add_special_tokens=False)})


def check_vocabulary(tokenizer: CaptionTokenizer, captions: Iterable[str], source: str) -> list[str]:
    """The words to add with --grow-vocab, most frequent first; empty when every word is known."""
    return [word for word, _ in unknown_words(tokenizer, captions).most_common()]


def refuse_unknown(words: list[str], source: str) -> EdgeDacError:
    shown = ", ".join(repr(w) for w in words[:5])
    return EdgeDacError(
        f"{source}: {len(words)} caption word(s) are unknown to the model's tokenizer and would be "
        f"learned as [UNK] (first: {shown}); pass --grow-vocab to add them as new tokens, or reword the captions"
    )


def grow_vocabulary(captioner: Captioner, words: list[str]) -> Captioner:
    """A copy of ``captioner`` whose tokenizer also knows ``words``; new rows of the token
    embedding and output layer start at the mean of the old rows."""
    tokenizer = captioner.tokenizer
    old_size = len(tokenizer)
    tokenizer.add_tokens([AddedToken(word, single_word=True, normalized=True) for word in words])
    dims = dataclasses.replace(captioner.dims, vocab_size=len(tokenizer))
    grown = Captioner(dims, tokenizer)
    state = {}
    new_shapes = grown.state_dict()
    for name, tensor in captioner.state_dict().items():
        if tensor.ndim >= 1 and tensor.shape[0] == old_size and new_shapes[name].shape[0] == dims.vocab_size:
            extra = tensor.mean(dim=0, keepdim=True).expand(dims.vocab_size - old_size, *tensor.shape[1:])
            tensor = torch.cat([tensor, extra])
        state[name] = tensor
    grown.load_state_dict(state)
    return grown
