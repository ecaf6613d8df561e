"""Caption tokenizer: a WordPiece vocabulary built from the training captions, run by ``tokenizers``.

Wrapped in ``CaptionTokenizer`` (the few calls of ``transformers.PreTrainedTokenizerFast`` the
package makes, same results; transformers itself would cost a daemon ~20 MB of memory for nothing)
and saved as ``tokenizer.json``. With the small vocabularies used here nearly every caption word is
one token, which suits parallel (non-autoregressive) decoding: fewer positions, no words broken
across tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # ids 0..3, fixed so every checkpoint agrees


class CaptionTokenizer:
    """A ``tokenizers.Tokenizer`` with the special tokens registered, behind the subset of
    ``transformers.PreTrainedTokenizerFast``'s interface the package uses."""

    def __init__(self, backend: Tokenizer):
        backend.add_special_tokens(SPECIAL_TOKENS)  # no-op when tokenizer.json already has them
        self.backend_tokenizer = backend

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Ids of tokens; a token not in the vocabulary is [UNK]'s id."""
        if isinstance(tokens, str):
            found = self.backend_tokenizer.token_to_id(tokens)
            return self.backend_tokenizer.token_to_id(UNK) if found is None else found
        return [self.convert_tokens_to_ids(token) for token in tokens]

    def add_tokens(self, tokens: list[str | AddedToken]) -> int:
        return self.backend_tokenizer.add_tokens(tokens)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        """Text of ids, special tokens dropped; the WordPiece decoder (``cleanup``) re-attaches
        punctuation and contractions, which transformers did a second time to the same effect."""
        return self.backend_tokenizer.decode(ids, skip_special_tokens=True)


def _base_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def train_tokenizer(captions: Iterable[str], vocab_size: int = 1000) -> CaptionTokenizer:
    """A deterministic WordPiece vocabulary of about ``vocab_size`` tokens from caption texts.

    The vocabulary is the special tokens, every character seen (alone and as a ``##`` word piece,
    so no word made of known characters is ever [UNK]; they are kept even past ``vocab_size``), then
    whole words by falling frequency, ties broken alphabetically, up to ``vocab_size``.
    ``tokenizers``' own WordPiece trainer breaks frequency ties differently on every run, which made
    two trainings on the same captions disagree; whole words also suit parallel decoding best.
    """
    counter = _base_tokenizer({token: i for i, token in enumerate(SPECIAL_TOKENS)})
    words: Counter[str] = Counter()
    for caption in captions:
        normalized = counter.normalizer.normalize_str(caption)
        words.update(word for word, _ in counter.pre_tokenizer.pre_tokenize_str(normalized))
    characters = sorted({character for word in words for character in word})
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *characters, *(f"##{c}" for c in characters)]:
        vocab.setdefault(token, len(vocab))
    for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    return CaptionTokenizer(_base_tokenizer(vocab))


def load_tokenizer(path: str | Path) -> CaptionTokenizer:
    """Load a ``tokenizer.json`` written by :func:`save_tokenizer`."""
    return CaptionTokenizer(Tokenizer.from_file(str(path)))


def save_tokenizer(tokenizer: CaptionTokenizer, path: str | Path) -> None:
    tokenizer.backend_tokenizer.save(str(path))


def encode_caption(tokenizer: CaptionTokenizer, caption: str) -> list[int]:
    """Token ids of a caption, without special tokens."""
    return tokenizer.encode(caption, add_special_tokens=False)


def decode_tokens(tokenizer: CaptionTokenizer, ids: Iterable[int]) -> str:
    """Text of token ids, special tokens dropped, punctuation re-attached."""
    text = tokenizer.decode(list(ids)).strip()
    # A word piece with nothing to attach to (a sampler's stray first token) is shown as a word.
    return text.removeprefix("##")


def normalize_caption(tokenizer: CaptionTokenizer, caption: str) -> str:
    """A caption as the model can write it (lowercased, re-spaced): the target of exact-match tests."""
    return decode_tokens(tokenizer, encode_caption(tokenizer, caption))
