"""Cutting a sample stream into overlapping windows with sample-clock timestamps.

A window's time comes from its position in the stream (sample index / rate), anchored once to
the wall clock when the first sample arrived (``SampleClock``; the daemon uses ``clock.AudioClock``,
which starts the same and then keeps a live source's rate on the wall clock). Processing delays,
backlogs and dropped windows therefore never shift a timestamp. Windows start at multiples of
the hop, so their boundaries are exact sample indexes; a gap in the stream (a device that was
lost) restarts the buffer at the next hop boundary instead of stitching audio from two different
moments together.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np


@dataclass(frozen=True)
class AudioBlock:
    """Contiguous mono samples from a source; ``start_sample`` is on the source's sample clock."""

    samples: np.ndarray
    start_sample: int

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.samples)


@dataclass(frozen=True)
class SampleClock:
    """Maps sample indexes to wall-clock time: one anchor, then pure arithmetic (no drift)."""

    sample_rate: int
    anchor_time: float  # unix time of ``anchor_sample``
    anchor_sample: int = 0

    def time_of(self, sample: int) -> float:
        return self.anchor_time + (sample - self.anchor_sample) / self.sample_rate

    def iso(self, sample: int) -> str:
        """ISO 8601 in UTC with microseconds, e.g. ``2025-01-31T12:00:03.250000Z``."""
        moment = datetime.fromtimestamp(self.time_of(sample), tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Window:
    samples: np.ndarray  # (length,) float32
    start_sample: int
    end_sample: int  # exclusive
    level_dbfs: float
    silent: bool
    complete_at: float | None = None  # unix time its last sample reached the process (for latency)


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level relative to full scale; digital silence is -inf."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else float("-inf")


class Windower:
    """Turns audio blocks into windows of ``length`` samples every ``hop`` samples."""

    def __init__(self, length_s: float, hop_s: float, sample_rate: int, silence_dbfs: float | None = -60.0):
        self.sample_rate = sample_rate
        self.length, self.hop = self._samples(length_s, hop_s)
        self.silence_dbfs = silence_dbfs
        self._lock = threading.Lock()  # push (capture thread) and reconfigure (a reload) exclude each other
        self._chunks: list[np.ndarray] = []  # joined only when a window is due: O(window) per window
        self._buffer_start = 0  # sample index of the first buffered sample
        self._buffered = 0
        self._next_start: int | None = None
        self.gaps = 0  # discontinuities seen (device lost and reopened)

    def _align(self, sample: int) -> int:
        return -(-sample // self.hop) * self.hop  # next multiple of hop at or after ``sample``

    def _samples(self, length_s: float, hop_s: float) -> tuple[int, int]:
        length, hop = round(length_s * self.sample_rate), round(hop_s * self.sample_rate)
        if length <= 0 or hop <= 0:
            raise ValueError("window length and hop must be at least one sample")
        return length, hop

    def reconfigure(self, length_s: float, hop_s: float, silence_dbfs: float | None) -> None:
        """New window length, hop and gate for the stream in progress (SIGHUP), keeping what is buffered:
        the next window starts at the next multiple of the new hop at or after where the next one would
        have started, on the same sample clock, and no audio already received is thrown away."""
        length, hop = self._samples(length_s, hop_s)
        with self._lock:
            self.length, self.hop, self.silence_dbfs = length, hop, silence_dbfs
            if self._next_start is not None:
                self._next_start = self._align(self._next_start)

    def push(self, block: AudioBlock, arrived_at: float | None = None) -> list[Window]:
        """The windows ``block`` completes; ``arrived_at`` (when the block was read) becomes their ``complete_at``."""
        with self._lock:
            return self._push(block, arrived_at)

    def _push(self, block: AudioBlock, arrived_at: float | None) -> list[Window]:
        if self._next_start is None or block.start_sample != self._buffer_start + self._buffered:
            if self._next_start is not None:
                self.gaps += 1
            self._chunks, self._buffered = [], 0
            self._buffer_start = block.start_sample
            self._next_start = self._align(block.start_sample)
        self._chunks.append(block.samples.astype(np.float32, copy=False))
        self._buffered += len(block.samples)
        buffer_end = self._buffer_start + self._buffered
        if self._next_start + self.length > buffer_end:
            return []
        buffer = np.concatenate(self._chunks)
        windows = []
        while self._next_start + self.length <= buffer_end:
            offset = self._next_start - self._buffer_start
            samples = buffer[offset : offset + self.length].copy()
            level = level_dbfs(samples)
            silent = self.silence_dbfs is not None and level < self.silence_dbfs
            windows.append(
                Window(samples, self._next_start, self._next_start + self.length, level, silent, arrived_at)
            )
            self._next_start += self.hop
        # Keep only what a future window can still use: memory stays bounded at one window.
        keep_from = min(max(0, self._next_start - self._buffer_start), len(buffer))
        self._chunks = [buffer[keep_from:]]
        self._buffered = len(buffer) - keep_from
        self._buffer_start += keep_from
        return windows
