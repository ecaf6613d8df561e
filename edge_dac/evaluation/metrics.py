"""``evaluate_captions``: every caption metric of ``edge-dac eval`` in one flat, JSON-ready dict.

Quality metrics score the best (first) candidate of each clip against its references; diversity
metrics look at all K candidates. Keys:

- ``bleu_1`` .. ``bleu_4``, ``meteor``, ``rouge_l``, ``cider_d`` (see ``quality``)
- ``sbert_max``, ``sbert_mean`` (see ``embedder.sbert_similarity``)
- ``event_precision``, ``event_recall``, ``event_f1``, ``event_macro_*``, ``event_n_labels`` (``events``)
- ``distinct_1/2``, ``mtld``, ``self_bleu``, ``corpus_distinct_1/2``, ``corpus_mtld``, ``vocab_size``,
  ``vocab_size_all_candidates`` (``diversity``)
- ``n_clips``, ``candidates_per_clip`` (mean K)

A metric that is turned off is absent; one that is undefined for the data (MTLD of short texts,
self-BLEU with one candidate) is None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loguru import logger

from edge_dac.errors import EdgeDacError
from edge_dac.evaluation.diversity import diversity_metrics
from edge_dac.evaluation.embedder import SentenceEmbedder, sbert_similarity
from edge_dac.evaluation.events import event_f1, labels_of_captions
from edge_dac.evaluation.quality import coco_metrics
from edge_dac.model.decoding import is_broken, is_misfit, is_redundant


def _check_captions(name: str, clips: Sequence[Sequence[str]]) -> None:
    for i, clip in enumerate(clips):
        if isinstance(clip, str) or not isinstance(clip, Sequence):
            raise EdgeDacError(f"{name}[{i}] must be a list of caption strings, got {type(clip).__name__}")
        if not clip:
            raise EdgeDacError(f"{name}[{i}] is empty: every clip needs at least one caption")
        for caption in clip:
            if not isinstance(caption, str):
                raise EdgeDacError(f"{name}[{i}] holds a {type(caption).__name__}, not a caption string")


def evaluate_captions(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    true_labels: Sequence[set[str]] | None = None,
    labels_of: Callable[[str], set[str]] | None = None,
    sbert: bool = True,
    meteor: bool = True,
    embedder: SentenceEmbedder | None = None,
    progress: bool = False,
) -> dict[str, float | int | None]:
    """All metrics for K candidate captions per clip (best first) against the clips' references.

    Event-F1 needs ``labels_of`` (caption -> event labels); the true labels are ``true_labels``
    when given, else the union of the labels of each clip's references.
    """
    if len(predictions) != len(references):
        raise EdgeDacError(
            f"got predictions for {len(predictions)} clips but references for {len(references)}: "
            "give one entry per clip in both"
        )
    if not predictions:
        raise EdgeDacError("no clips to evaluate: predictions and references are empty")
    _check_captions("predictions", predictions)
    _check_captions("references", references)
    if true_labels is not None and labels_of is None:
        raise EdgeDacError("true labels were given without labels_of, the caption-to-labels mapping event-F1 needs")

    best = [clip[0] for clip in predictions]
    results: dict[str, float | int | None] = {
        "n_clips": len(predictions),
        "candidates_per_clip": sum(map(len, predictions)) / len(predictions),
    }
    logger.info(f"scoring {len(best)} captions against {sum(map(len, references))} references")
    results.update(coco_metrics(best, references, meteor=meteor, progress=progress))
    if sbert:
        results.update(sbert_similarity(best, references, embedder=embedder, progress=progress))
    if labels_of is not None:
        if true_labels is None:
            true_labels = [set().union(*labels_of_captions(refs, labels_of)) for refs in references]
        events = event_f1(labels_of_captions(best, labels_of), true_labels)
        results.update({f"event_{key}": value for key, value in events.items()})
    results.update(diversity_metrics(predictions))
    results.update(fluency_metrics(predictions))
    return results


def fluency_metrics(predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of broken captions (``edge_dac.model.decoding.is_broken``: not a whole phrase), among
    the best captions and among all candidates, of redundant best captions (``is_redundant``:
    whole, but one sound named twice) and of misfit ones (``is_misfit``: a noun with a verb of
    another sound, "a siren applauds")."""
    best = [clip[0] for clip in predictions]
    every = [caption for clip in predictions for caption in clip]
    return {
        "broken": sum(map(is_broken, best)) / len(best),
        "broken_all_candidates": sum(map(is_broken, every)) / len(every),
        "redundant": sum(map(is_redundant, best)) / len(best),
        "misfit": sum(map(is_misfit, best)) / len(best),
    }
