"""Caption tokenizer: WordPiece trained with ``tokenizers`` on the training captions.

Wrapped as a ``transformers.PreTrainedTokenizerFast`` and saved as ``tokenizer.json``. With the
small vocabularies used here nearly every caption word is one token, which suits parallel
(non-autoregressive) decoding: fewer positions, no words broken across tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # ids 0..3, fixed so every checkpoint agrees


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS
    )


def train_tokenizer(captions: Iterable[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """Learn a WordPiece vocabulary of at most ``vocab_size`` tokens from caption texts."""
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(captions, trainer=trainer)
    return _wrap(tokenizer)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a ``tokenizer.json`` written by :func:`save_tokenizer`."""
    return _wrap(Tokenizer.from_file(str(path)))


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: str | Path) -> None:
    tokenizer.backend_tokenizer.save(str(path))


def encode_caption(tokenizer: PreTrainedTokenizerFast, caption: str) -> list[int]:
    """Token ids of a caption, without special tokens."""
    return tokenizer.encode(caption, add_special_tokens=False)


def decode_tokens(tokenizer: PreTrainedTokenizerFast, ids: Iterable[int]) -> str:
    """Text of token ids, special tokens dropped, punctuation re-attached."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
    # A word piece with nothing to attach to (a sampler's stray first token) is shown as a word.
    return text.removeprefix("##")


def normalize_caption(tokenizer: PreTrainedTokenizerFast, caption: str) -> str:
    """A caption as the model can write it (lowercased, re-spaced): the target of exact-match tests."""
    return decode_tokens(tokenizer, encode_caption(tokenizer, caption))
