"""A sentence embedder that embeds each distinct sentence once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_dac.evaluation.embedder import SentenceEmbedder


class CachedEmbedder(SentenceEmbedder):
    """A ``SentenceEmbedder`` that embeds each distinct sentence once: the steps sweep and the DAC/AR
    bench score many caption sets against the same references."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, sentences: Sequence[str], progress: bool = False) -> np.ndarray:
        missing = [s for s in dict.fromkeys(sentences) if s not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, super().encode(missing, progress=progress), strict=True))
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[s] for s in sentences])
