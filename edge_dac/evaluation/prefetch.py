"""Reading clips for captioning: each clip's first window, the next batch read while this one is
captioned."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edge_dac.data.datasets import CaptionItem, load_item_audio


def fit_window(audio: np.ndarray, samples: int) -> np.ndarray:
    """The first ``samples`` samples of ``audio``, zero-padded when it is shorter."""
    window = np.zeros(samples, dtype=np.float32)
    kept = min(samples, audio.size)
    window[:kept] = audio[:kept]
    return window


def load_windows(
    items: Sequence[CaptionItem], sample_rate: int, window_samples: int, batch_size: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Batches of (batch, window_samples) audio and how many of its clips were longer than a window.

    The next batch is read in a background thread while the caller captions this one (decoding
    FLAC releases the GIL, so reading costs almost no captioning time).
    """

    def read(chunk: Sequence[CaptionItem]) -> tuple[np.ndarray, int]:
        audio = [load_item_audio(item, sample_rate) for item in chunk]
        longer = sum(a.size > window_samples for a in audio)
        return np.stack([fit_window(a, window_samples) for a in audio]), longer

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, chunks[0])
        for index in range(len(chunks)):
            batch = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(read, chunks[index + 1])
            yield batch
