"""Event-F1: do the captions name the sound events that are really in the clip?

Captions are mapped to event labels by a caller-supplied ``labels_of(caption) -> set[str]``
(normally ``edge_dac.lexicon.Lexicon.labels_in_caption``), and compared per clip with the
true labels.

- micro (``precision``, ``recall``, ``f1``): true/false positives and misses pooled over all clips.
- macro (``macro_*``): per label over the clips, then averaged over every label that occurs in the
  truth or in the predictions, so rare events weigh as much as common ones (the sound-event
  detection convention). A label that is never predicted has precision 0, one never true recall 0.
Any ratio with a zero denominator is 0 (there is nothing to be right about).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from edge_dac.errors import EdgeDacError


def _ratio(numerator: int | float, denominator: int | float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def event_f1(
    predicted_label_sets: Sequence[Iterable[str]], true_label_sets: Sequence[Iterable[str]]
) -> dict[str, float]:
    """Micro and macro precision, recall and F1 of predicted against true label sets, clip by clip."""
    if len(predicted_label_sets) != len(true_label_sets):
        raise EdgeDacError(
            f"event-F1 got {len(predicted_label_sets)} predicted label sets for {len(true_label_sets)} "
            "clips with true labels: give one set per clip"
        )
    hits, false_alarms, misses = Counter(), Counter(), Counter()
    for predicted, true in zip(predicted_label_sets, true_label_sets, strict=True):
        predicted, true = set(predicted), set(true)
        hits.update(predicted & true)
        false_alarms.update(predicted - true)
        misses.update(true - predicted)
    tp, fp, fn = sum(hits.values()), sum(false_alarms.values()), sum(misses.values())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)

    labels = set(hits) | set(false_alarms) | set(misses)
    per_label = []
    for label in labels:
        p = _ratio(hits[label], hits[label] + false_alarms[label])
        r = _ratio(hits[label], hits[label] + misses[label])
        per_label.append((p, r, _f1(p, r)))
    n = len(per_label)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "macro_precision": _ratio(sum(p for p, _, _ in per_label), n),
        "macro_recall": _ratio(sum(r for _, r, _ in per_label), n),
        "macro_f1": _ratio(sum(f for _, _, f in per_label), n),
        "n_labels": n,
    }


def labels_of_captions(captions: Sequence[str], labels_of: Callable[[str], set[str]]) -> list[set[str]]:
    """The label set of each caption."""
    return [set(labels_of(caption)) for caption in captions]
