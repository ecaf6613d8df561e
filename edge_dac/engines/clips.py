"""Real audio for parity and quality checks: windows cut from the demo scenes bundled with the package."""

from __future__ import annotations

import numpy as np

from edge_dac.audio import load_audio
from edge_dac.const import DEMO_DIR
from edge_dac.windows import cut, plan_windows


def demo_windows(sample_rate: int, window_samples: int, hop_fraction: float = 0.5) -> np.ndarray:
    """(n, window_samples) float32: every demo scene cut into windows overlapping by half (5 scenes of 10 s)."""
    hop = max(1, int(window_samples * hop_fraction))
    pieces = []
    for path in sorted(DEMO_DIR.glob("*.flac")):
        audio = load_audio(path, sample_rate)
        pieces.append(cut(audio, plan_windows(audio.size, window_samples, hop), window_samples))
    return np.concatenate(pieces)
