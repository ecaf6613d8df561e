"""Captioning audio files window by window (the library side of ``edge-dac caption``).

Files are decoded block by block (``stream_audio``) and cut into windows as the audio arrives
(``stream_windows``), and at most ``batch_size`` windows wait for the engine, so memory stays flat
however long the file is (a 60-minute file uses what a 10-second one does). Like the daemon, windows
below the silence gate are not captioned, and neither is a file too short to say anything about:
each gets a ``WindowCaption`` with ``skipped`` set instead of a made-up caption.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_dac.audio import stream_audio
from edge_dac.daemon.windows import level_dbfs  # the daemon's silence gate, measured the same way
from edge_dac.engines.base import CaptionEngine
from edge_dac.model.decoding import Candidate, DecodingOptions
from edge_dac.windows import Span, stream_windows

SILENCE_DBFS = -60.0  # the daemon's default gate (windows.silence_dbfs)
MIN_SECONDS = 0.5  # a file shorter than this is not captioned: its window would be nearly all padding
DEFAULT_BATCH = 16


@dataclass
class WindowCaption:
    file: str
    start: float
    end: float
    candidates: list[Candidate] = field(default_factory=list)
    skipped: str | None = None  # why it was not captioned: "silent" or "too short"

    @property
    def caption(self) -> str | None:
        return self.candidates[0].caption if self.candidates else None

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "caption": self.caption,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
            "skipped": self.skipped,
        }


def caption_windows(
    engine: CaptionEngine,
    windows: Iterable[tuple[Span, np.ndarray]],
    name: str,
    steps: int = DecodingOptions.steps,
    candidates: int = DecodingOptions.candidates,
    batch_size: int = DEFAULT_BATCH,
    silence_dbfs: float | None = SILENCE_DBFS,
    min_seconds: float = MIN_SECONDS,
) -> Iterator[WindowCaption]:
    """One ``WindowCaption`` per (span, samples), in order; at most ``batch_size`` windows per engine call.

    A window quieter than ``silence_dbfs`` (None: no gate) is ``skipped="silent"``; a window shorter
    than ``min_seconds`` (only a file shorter than one window has one) is ``skipped="too short"``.
    """
    rate, length = engine.sample_rate, engine.window_samples
    pending: list[tuple[WindowCaption, np.ndarray | None]] = []
    voiced = 0

    def flush() -> Iterator[WindowCaption]:
        batch = [samples for _, samples in pending if samples is not None]
        if batch:
            stacked = np.zeros((len(batch), length), dtype=np.float32)
            for row, samples in enumerate(batch):
                stacked[row, : min(samples.size, length)] = samples[:length]
            results = iter(engine.caption(stacked, steps, candidates))
            for item, samples in pending:
                if samples is not None:
                    item.candidates = list(next(results))
        yield from (item for item, _ in pending)
        pending.clear()

    for span, samples in windows:
        item = WindowCaption(name, *span.seconds(rate))
        if samples.size < min(length, round(min_seconds * rate)):
            item.skipped = "too short"
        elif silence_dbfs is not None and level_dbfs(samples) < silence_dbfs:
            item.skipped = "silent"
        pending.append((item, None if item.skipped else samples))
        voiced += item.skipped is None
        if voiced >= batch_size:
            yield from flush()
            voiced = 0
    yield from flush()


def _window_and_hop(engine: CaptionEngine, window_seconds: float | None, hop_seconds: float | None) -> tuple[int, int]:
    rate = engine.sample_rate
    window = int(round(window_seconds * rate)) if window_seconds else engine.window_samples
    hop = int(round(hop_seconds * rate)) if hop_seconds else window
    return window, hop


def caption_audio(
    engine: CaptionEngine,
    audio: np.ndarray,
    name: str,
    steps: int = DecodingOptions.steps,
    candidates: int = DecodingOptions.candidates,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    **options,
) -> Iterator[WindowCaption]:
    """Caption a mono waveform at the model's rate, one ``WindowCaption`` per window, in order
    (``options``: ``batch_size``, ``silence_dbfs``, ``min_seconds`` as for ``caption_windows``)."""
    window, hop = _window_and_hop(engine, window_seconds, hop_seconds)
    return caption_windows(engine, stream_windows([audio], window, hop), name, steps, candidates, **options)


def iter_caption_file(
    engine: CaptionEngine,
    path: str | Path,
    steps: int = DecodingOptions.steps,
    candidates: int = DecodingOptions.candidates,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    **options,
) -> Iterator[WindowCaption]:
    """Caption any audio file (resampled and down-mixed) window by window as it is decoded.

    An unreadable file raises ``AudioError`` before the first window; a file found damaged part-way
    raises it after the windows before the damage.
    """
    window, hop = _window_and_hop(engine, window_seconds, hop_seconds)
    windows = stream_windows(stream_audio(path, engine.sample_rate), window, hop)
    return caption_windows(engine, windows, str(path), steps, candidates, **options)


def caption_file(engine: CaptionEngine, path: str | Path, **kwargs) -> list[WindowCaption]:
    """``iter_caption_file`` as a list."""
    return list(iter_caption_file(engine, path, **kwargs))
