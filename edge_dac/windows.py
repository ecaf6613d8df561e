"""Cutting long audio into fixed windows (``edge-dac caption``; the daemon has its own streaming cutter)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """Where one window lies in a file: a range of sample indexes (the daemon's ``Window`` holds samples)."""

    start: int  # first sample
    end: int  # one past the last sample (never past the end of the audio)

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


def gap_warning(window_s: float, hop_s: float, hop_name: str = "hop") -> str | None:
    """One line saying how much audio a hop longer than the window leaves uncaptioned, or None.

    Allowed on purpose (a duty cycle saves power on a battery device), but never silently.
    """
    if hop_s <= window_s + 1e-9:
        return None
    return (
        f"{hop_name} {hop_s:g} s is longer than the {window_s:g} s window: {hop_s - window_s:g} s of every "
        f"{hop_s:g} s are never captioned; set it to {window_s:g} s or less to caption all of the audio"
    )


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


def stream_windows(blocks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[tuple[Span, np.ndarray]]:
    """The windows ``plan_windows`` gives for audio arriving in ``blocks``, with their samples, in order.

    Only the end of the audio is unknown until the last block, so at most one window plus one block
    is held: the same spans and samples as ``plan_windows(len(audio), window, hop)`` on the whole
    array, for audio of any length.
    """
    if window <= 0 or hop <= 0:
        raise ValueError("window and hop must be positive")
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = next_start = total = 0
    last_end = None  # end of the last window handed out
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        total += len(block)
        while next_start + window <= total:
            offset = next_start - buffer_start
            yield Span(next_start, next_start + window), buffer[offset : offset + window].copy()
            last_end, next_start = next_start + window, next_start + hop
        # A later window starts at next_start, and a final one may end at the end of the audio.
        keep_from = max(buffer_start, min(next_start, total - window))
        buffer, buffer_start = buffer[keep_from - buffer_start :], keep_from
    if total == 0:
        return
    if total <= window and last_end is None:
        yield Span(0, total), buffer[:total].copy()
    elif last_end is not None and last_end < total:
        yield Span(total - window, total), buffer[total - window - buffer_start :].copy()
