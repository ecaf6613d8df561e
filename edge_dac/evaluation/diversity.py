"""Diversity of generated captions: within the K candidates of a clip, and across the test set.

A diffusion captioner can draw several captions per clip; these numbers say whether they differ
(within a clip) and whether the model describes different clips differently (across the set,
using the best caption of each clip).

- Distinct-n: unique n-grams / all n-grams (n-grams never cross caption boundaries).
- MTLD (McCarthy & Jarvis 2010), from ``lexicalrichness``: mean length of word runs that keep a
  type-token ratio above 0.72. It is unstable on very short texts, so below ``MTLD_MIN_TOKENS``
  tokens a text gets no value and is left out of the mean.
- Self-BLEU: BLEU-4 of each candidate against the clip's other candidates, averaged; 1 means all
  candidates are the same, lower is more diverse. Sentence BLEU here is smoothed with add-one on
  the 2- to 4-gram precisions (BLEU+1, Lin & Och 2004), written out below rather than taken from
  nltk; without smoothing most short caption pairs would score 0 for lack of a common 4-gram.
- Vocabulary size: distinct words used.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from edge_dac.evaluation.quality import tokenize_caption

MTLD_MIN_TOKENS = 10
MTLD_THRESHOLD = 0.72


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Unique n-grams over all n-grams of the given captions (0 when there are none)."""
    grams = [gram for tokens in token_lists for gram in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def mtld(tokens: Sequence[str], min_tokens: int = MTLD_MIN_TOKENS) -> float | None:
    """MTLD of a token sequence, or None when it is shorter than ``min_tokens``."""
    if len(tokens) < max(min_tokens, 1):
        return None
    from lexicalrichness import LexicalRichness  # imports pandas/scipy/matplotlib: ~2.5 s, so lazily

    return float(LexicalRichness(list(tokens), preprocessor=None, tokenizer=None).mtld(MTLD_THRESHOLD))


def sentence_bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Smoothed (BLEU+1) sentence BLEU with the closest reference length for the brevity penalty."""
    if not hypothesis or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(ngrams(hypothesis, n))
        most_in_a_reference: Counter = Counter()
        for reference in references:
            most_in_a_reference |= Counter(ngrams(reference, n))
        matches = sum(min(count, most_in_a_reference[gram]) for gram, count in counts.items())
        total = sum(counts.values())
        if n > 1:
            matches, total = matches + 1, total + 1
        if matches == 0:
            return 0.0
        log_precision += math.log(matches / total) / max_n
    length = len(hypothesis)
    closest = min((abs(len(r) - length), len(r)) for r in references)[1]
    brevity = 1.0 if length >= closest else math.exp(1 - closest / length)
    return brevity * math.exp(log_precision)


def self_bleu(token_lists: Sequence[Sequence[str]]) -> float | None:
    """Mean BLEU-4 of each candidate against the others; None for fewer than two candidates."""
    if len(token_lists) < 2:
        return None
    scores = [
        sentence_bleu(candidate, [other for j, other in enumerate(token_lists) if j != i])
        for i, candidate in enumerate(token_lists)
    ]
    return float(np.mean(scores))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def diversity_metrics(candidates: Sequence[Sequence[str]]) -> dict[str, float | int | None]:
    """Diversity numbers for K candidates per clip (best first); None where undefined."""
    per_clip = [[tokenize_caption(c) for c in clip] for clip in candidates]
    best = [clip[0] for clip in per_clip]
    best_words = [token for tokens in best for token in tokens]
    return {
        # within a clip, averaged over clips
        "distinct_1": _mean([distinct_n(clip, 1) for clip in per_clip]),
        "distinct_2": _mean([distinct_n(clip, 2) for clip in per_clip]),
        "mtld": _mean([mtld([t for tokens in clip for t in tokens]) for clip in per_clip]),
        "self_bleu": _mean([self_bleu(clip) for clip in per_clip]),
        # across the test set, best caption of each clip
        "corpus_distinct_1": distinct_n(best, 1),
        "corpus_distinct_2": distinct_n(best, 2),
        "corpus_mtld": mtld(best_words),
        "vocab_size": len(set(best_words)),
        "vocab_size_all_candidates": len({t for clip in per_clip for tokens in clip for t in tokens}),
    }
