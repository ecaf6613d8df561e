"""Cutting long audio into fixed windows (``edge-dac caption``; the daemon has its own streaming cutter)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """Where one window lies in a file: a range of sample indexes (the daemon's ``Window`` holds samples)."""

    start: int  # first sample
    end: int  # one past the last sample (never past the end of the audio)

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


def plan_windows(n_samples: int, window: int, hop: int) -> list[Span]:
    """Windows of ``window`` samples every ``hop`` samples; the last one ends at the end of the audio.

    A file shorter than one window is one (short) window. The tail is covered by a final window
    aligned to the end rather than by a short leftover, so every caption sees a full window of
    sound where the file has one.
    """
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    if n_samples <= window:
        return [Span(0, n_samples)]
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return [Span(start, start + window) for start in starts]


def cut(audio: np.ndarray, windows: list[Span], length: int) -> np.ndarray:
    """Stack windows into (len(windows), length), zero-padding short ones."""
    batch = np.zeros((len(windows), length), dtype=np.float32)
    for row, window in enumerate(windows):
        piece = audio[window.start : window.end]
        batch[row, : piece.size] = piece
    return batch
