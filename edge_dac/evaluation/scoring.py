"""Scoring captioned clips: every metric of ``evaluate_captions``, plus event-F1 against the events
a manifest lists for its clips."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from edge_dac.data.datasets import CaptionItem
from edge_dac.errors import EdgeDacError
from edge_dac.evaluation.embedder import SentenceEmbedder
from edge_dac.evaluation.events import event_f1
from edge_dac.evaluation.metrics import evaluate_captions
from edge_dac.lexicon import Lexicon, load_lexicon
from edge_dac.model.decoding import Candidate


def true_event_labels(item: CaptionItem, lexicon: Lexicon) -> set[str] | None:
    """The event classes in a clip, named as ``Lexicon.labels_in_caption`` names them; None without events.

    Manifest events carry a catalog ``label`` ("footstep on gravel") and its ``class``
    ("footsteps"); captions are read back to classes, so classes are what is compared.
    """
    if item.events is None:
        return None
    classes = set()
    for event in item.events:
        name = event.get("class") or event.get("label")
        if not name:
            raise EdgeDacError(f"clip {item.id}: an event has neither 'class' nor 'label'; fix the manifest")
        if name not in lexicon.entries:
            # A class the lexicon cannot read from captions stays as it is, and counts as missed.
            with contextlib.suppress(KeyError):
                name = lexicon.event_class(name)
        classes.add(name)
    return classes


def event_metrics(best_captions: Sequence[str], items: Sequence[CaptionItem], lexicon: Lexicon) -> dict:
    """Event-F1 (micro and macro) of the best captions over the clips that list their events."""
    pairs = []
    for caption, item in zip(best_captions, items, strict=True):
        truth = true_event_labels(item, lexicon)
        if truth is not None:
            pairs.append((lexicon.labels_in_caption(caption), truth))
    if not pairs:
        return {}
    scores = event_f1([predicted for predicted, _ in pairs], [truth for _, truth in pairs])
    return {**{f"event_{key}": value for key, value in scores.items()}, "event_n_clips": len(pairs)}


def score_clips(
    predictions: Sequence[Sequence[Candidate]],
    items: Sequence[CaptionItem],
    lexicon: Lexicon | None = None,
    sbert: bool = True,
    meteor: bool = True,
    embedder: SentenceEmbedder | None = None,
    progress: bool = False,
) -> dict[str, float | int | None]:
    """Quality of the best candidate, diversity of all, and event-F1 where the items list events."""
    lexicon = lexicon or load_lexicon()
    captions = [[candidate.caption for candidate in clip] for clip in predictions]
    references = [item.captions for item in items]
    metrics = evaluate_captions(
        captions, references, sbert=sbert, meteor=meteor, embedder=embedder, progress=progress
    )
    metrics.update(event_metrics([clip[0] for clip in captions], items, lexicon))
    return metrics
