"""K candidate captions per clip, in batches: clips read from disk (``caption_items``) or windows
already in memory (``caption_windows``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from edge_dac.data.datasets import CaptionItem
from edge_dac.evaluation.prefetch import load_windows
from edge_dac.evaluation.speed import CaptionFn
from edge_dac.model.decoding import Candidate


@dataclass
class CaptionedClips:
    predictions: list[list[Candidate]]  # per clip, best first
    windows: np.ndarray  # the first ``keep`` clips' audio windows, for timing and the step sweep
    longer_than_window: int  # clips of which only the first window was captioned


def caption_items(
    caption_fn: CaptionFn,
    items: Sequence[CaptionItem],
    sample_rate: int,
    window_samples: int,
    batch_size: int = 32,
    keep: int = 0,
    progress: bool = False,
) -> CaptionedClips:
    """Caption every item (read from disk batch by batch), keeping the first ``keep`` windows in memory."""
    predictions: list[list[Candidate]] = []
    kept: list[np.ndarray] = []
    longer = 0
    batches = load_windows(items, sample_rate, window_samples, batch_size)
    total = -(-len(items) // batch_size)
    for batch, batch_longer in tqdm(batches, total=total, desc="captioning", unit="batch", disable=not progress):
        predictions += caption_fn(batch)
        longer += batch_longer
        room = keep - sum(len(k) for k in kept)
        if room > 0:
            kept.append(batch[:room])
    windows = np.concatenate(kept) if kept else np.zeros((0, window_samples), dtype=np.float32)
    return CaptionedClips(predictions, windows, longer)


def caption_windows(caption_fn: CaptionFn, windows: np.ndarray, batch_size: int = 32) -> list[list[Candidate]]:
    """Caption windows already in memory, ``batch_size`` at a time."""
    predictions: list[list[Candidate]] = []
    for start in range(0, len(windows), batch_size):
        predictions += caption_fn(windows[start : start + batch_size])
    return predictions
