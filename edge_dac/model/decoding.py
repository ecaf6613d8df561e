"""Decoding options and the post-processing shared by both decoders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn a clip into captions.

    steps: denoiser evaluations (DAC); candidates: captions per clip (DAC samples, AR beams);
    beam_size: AR only (1 = greedy); seed: makes DAC's starting noise reproducible;
    rank: "mbr" picks the candidate that agrees most with the others, "score" the most probable;
    "auto" is "mbr" for DAC's independent samples and "score" for AR beams (beams are not samples,
    so their consensus is not a good estimate of the best caption); prefer_whole: whole captions
    come first, in that order, then the broken ones.
    """

    steps: int = 6
    candidates: int = 5
    beam_size: int = 1
    seed: int | None = 0
    rank: str = "auto"
    noise_scale: float = 1.0
    prefer_whole: bool = True  # rank whole captions before broken ones (``is_broken``)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if self.rank not in ("auto", "mbr", "score"):
            raise ValueError(f"rank must be 'auto', 'mbr' or 'score', got {self.rank!r}")


@dataclass(frozen=True)
class Candidate:
    caption: str
    score: float  # mean log-probability per token: higher is more confident

    def to_dict(self) -> dict[str, object]:
        return {"caption": self.caption, "score": round(self.score, 4)}


def cut_and_collapse(ids: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Tokens up to the first [EOS]/[PAD], with adjacent repeats collapsed ("a dog dog barks").

    Parallel decoders tend to write the same token in two neighbouring positions; an audio
    caption virtually never needs a word twice in a row.
    """
    out: list[int] = []
    for token in ids:
        if token in (eos_id, pad_id):
            break
        if not out or out[-1] != token:
            out.append(token)
    return out


_JOINERS = {"and", "then", ","}


def collapse_repeated_words(text: str, max_phrase: int = 4) -> str:
    """Drop a phrase that repeats right after itself, directly or after "and"/"then"/",".

    The typical fault of parallel decoding ("an explosion and an explosion", "a dog dog barks");
    a caption never needs the same phrase twice in a row, counts are written as "twice".
    """
    words = text.split()
    changed = True
    while changed:
        changed = False
        for n in range(max_phrase, 0, -1):
            for i in range(len(words) - n):
                phrase = words[i : i + n]
                if words[i + n : i + 2 * n] == phrase:
                    del words[i + n : i + 2 * n]
                elif i + n < len(words) and words[i + n] in _JOINERS and words[i + n + 1 : i + 2 * n + 1] == phrase:
                    del words[i + n : i + 2 * n + 1]
                else:
                    continue
                changed = True
                break
            if changed:
                break
    return " ".join(words)


# Words a caption cannot end on, and that cannot follow an article: the fragments a parallel decoder
# leaves where it averaged several wordings ("a gun fires and a twice and a", "a drum an a with").
ARTICLES = frozenset({"a", "an", "the"})
FUNCTION_WORDS = ARTICLES | frozenset(
    {
        "and", "or", "but", "while", "as", "then", "with", "without", "in", "on", "at", "of", "by", "for",
        "from", "to", "into", "onto", "over", "under", "near", "during", "before", "after", "behind",
        "through", "across", "is", "are", "its", "their", "some", "that", "which", "who", "followed", ",",
    }
)


def is_broken(caption: str) -> bool:
    """A caption that is not a whole phrase: empty, ending in a function word, or with an article
    right before a function word ("a with", "the and")."""
    words = caption.replace(",", " , ").split()
    if not words or words[-1] in FUNCTION_WORDS:
        return True
    return any(word in ARTICLES and after in FUNCTION_WORDS for word, after in zip(words, words[1:], strict=False))


def _ngram_f1(a: list[str], b: list[str]) -> float:
    """F1 overlap of unigrams and bigrams: rewards the same words in the same order."""
    if not a or not b:
        return float(a == b)
    grams_a = Counter(a) + Counter(zip(a, a[1:], strict=False))
    grams_b = Counter(b) + Counter(zip(b, b[1:], strict=False))
    overlap = sum((grams_a & grams_b).values())
    return 2 * overlap / (sum(grams_a.values()) + sum(grams_b.values()))


def minimum_bayes_risk_order(captions: list[str]) -> list[int]:
    """Indices of captions sorted by mean agreement (uni+bigram F1) with the other candidates."""
    words = [caption.split() for caption in captions]
    if len(words) < 3:
        return list(range(len(words)))
    agreement = [
        sum(_ngram_f1(w, other) for j, other in enumerate(words) if j != i) / (len(words) - 1)
        for i, w in enumerate(words)
    ]
    return sorted(range(len(words)), key=lambda i: -agreement[i])
