"""Captioning audio files window by window (the library side of ``edge-dac caption``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_dac.audio import load_audio
from edge_dac.engines.base import CaptionEngine
from edge_dac.model.decoding import Candidate
from edge_dac.windows import Span, cut, plan_windows


@dataclass
class WindowCaption:
    file: str
    start: float
    end: float
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def caption(self) -> str:
        return self.candidates[0].caption if self.candidates else ""

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "caption": self.caption,
            "candidates": [candidate.to_dict() for candidate in self.candidates],
        }


def caption_audio(
    engine: CaptionEngine,
    audio: np.ndarray,
    name: str,
    steps: int = 6,
    candidates: int = 5,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    batch_size: int = 16,
) -> Iterator[WindowCaption]:
    """Caption a mono waveform at the model's rate, one ``WindowCaption`` per window, in order."""
    rate = engine.sample_rate
    window = int(round(window_seconds * rate)) if window_seconds else engine.window_samples
    hop = int(round(hop_seconds * rate)) if hop_seconds else window
    windows = plan_windows(audio.size, window, hop)
    for first in range(0, len(windows), batch_size):
        chunk: list[Span] = windows[first : first + batch_size]
        results = engine.caption(cut(audio, chunk, engine.window_samples), steps, candidates)
        for item, ranked in zip(chunk, results, strict=True):
            start, end = item.seconds(rate)
            yield WindowCaption(name, start, end, ranked)


def caption_file(engine: CaptionEngine, path: str | Path, **kwargs) -> list[WindowCaption]:
    """Read any audio file (resampled and down-mixed) and caption it window by window."""
    audio = load_audio(path, engine.sample_rate)
    return list(caption_audio(engine, audio, str(path), **kwargs))
