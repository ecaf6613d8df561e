"""The inference worker: a bounded queue of windows in front of the caption engine.

Capture must never wait for the engine. When the engine falls behind, the queue drops its oldest
pending window (counted and reported), so the daemon keeps describing the present instead of an
ever older past. Pending windows are taken in batches, which is how a slow engine catches up.
File sources read ``fast`` are the exception: they have no deadline, so they wait for room.
A window the engine returns no usable caption for (a non-finite score, an empty caption) goes to
``on_failed`` instead of ``on_result``: the daemon reports it in its status, never as a caption.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from loguru import logger

from edge_dac.daemon.windows import Window


class Candidate(Protocol):
    caption: str
    score: float


class Captioning(Protocol):
    """What the daemon needs from an engine (``edge_dac.engines.CaptionEngine`` has this shape).

    An engine may also have ``window_samples``, the audio its model hears: the default window length,
    and ``event_guidance``, which the daemon sets from ``engine.event_guidance`` (at start and reload).
    """

    model_id: str
    backend: str
    sample_rate: int

    def caption(self, windows: np.ndarray, steps: int, candidates: int) -> list[list[Candidate]]:
        """(batch, samples) float32 -> per window, ``candidates`` captions best first."""


class WindowQueue:
    """Bounded FIFO that drops the oldest item when full (or waits for room if asked to)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: deque[Window] = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Window, wait: bool = False) -> Window | None:
        """Add ``item``; returns the window dropped to make room, if any."""
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: len(self._items) < self.maxsize or self.closed)
            dropped = None
            if len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get_batch(self, max_items: int, timeout_s: float) -> list[Window]:
        """Up to ``max_items`` oldest pending windows; [] after ``timeout_s`` or once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self.closed, timeout=timeout_s)
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            self._cond.notify_all()
            return batch

    def close(self) -> None:
        """No more windows will come; the worker finishes what is pending and stops."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def resize(self, maxsize: int) -> None:
        """A new bound (SIGHUP); pending windows beyond it are dropped oldest first, as when full."""
        with self._cond:
            self.maxsize = maxsize
            while len(self._items) > maxsize:
                self._items.popleft()
                self.dropped += 1
            self._cond.notify_all()

    def clear(self) -> int:
        with self._cond:
            count = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return count


def caption_problem(candidates: list[tuple[str, float]]) -> str | None:
    """Why these ranked candidates are not a caption to publish (one line), or None when they are.

    A NaN or infinite score (damaged weights, an fp16 overflow) comes with empty or garbage text and
    cannot be written as JSON; an empty best caption tells a subscriber nothing.
    """
    if not candidates:
        return "the engine returned no candidates"
    bad = [score for _, score in candidates if not math.isfinite(score)]
    if bad:
        return f"the engine returned non-finite scores ({bad[0]}) for {len(bad)} of {len(candidates)} candidates"
    if not candidates[0][0].strip():
        return "the engine returned an empty caption"
    return None


@dataclass(frozen=True)
class Captioned:
    window: Window
    candidates: list[tuple[str, float]]  # best first
    processing_s: float  # engine time of the batch this window was in
    finished_at: float  # unix time the engine returned
    steps: int | None = None  # denoising steps it was captioned with (a reload may change them)


class InferenceWorker(threading.Thread):
    """Takes batches from the queue, captions them, hands each result to ``on_result``."""

    MAX_CONSECUTIVE_FAILURES = 3

    def __init__(
        self,
        engine: Captioning,
        queue: WindowQueue,
        *,
        steps: int,
        candidates: int,
        max_batch: int,
        on_result: Callable[[Captioned], None],
        on_silent: Callable[[Window], None] | None = None,
        on_failed: Callable[[Window, str], None] | None = None,
    ):
        super().__init__(name="inference", daemon=True)
        self.engine, self.queue = engine, queue
        self.steps, self.candidates, self.max_batch = steps, candidates, max_batch
        self.on_result, self.on_silent, self.on_failed = on_result, on_silent, on_failed
        self.busy_s = 0.0  # total engine time, for the real-time factor
        self.failures = 0
        self.error: BaseException | None = None  # set when the engine keeps failing; the daemon exits

    def run(self) -> None:
        consecutive = 0
        while True:
            batch = self.queue.get_batch(self.max_batch, timeout_s=0.2)
            if not batch:
                if self.queue.closed:
                    return
                continue
            # Silent windows travel through the queue too, so events see every window in order.
            voiced = [w for w in batch if not w.silent]
            steps, candidates = self.steps, self.candidates  # a reload may change them for the next batch
            started = time.perf_counter()
            try:
                results = self.engine.caption(np.stack([w.samples for w in voiced]), steps, candidates) if (
                    voiced
                ) else []
            except Exception as error:  # a bad batch must not kill capture; a broken engine must stop us
                self.failures += 1
                consecutive += 1
                logger.exception(f"engine failed on a batch of {len(voiced)} window(s): {error}")
                if consecutive >= self.MAX_CONSECUTIVE_FAILURES:
                    self.error = error
                    return
                continue
            consecutive = 0
            elapsed = time.perf_counter() - started if voiced else 0.0
            self.busy_s += elapsed
            finished = time.time()
            captions = iter(zip(voiced, results, strict=True))
            for window in batch:
                if window.silent:
                    if self.on_silent is not None:
                        self.on_silent(window)
                    continue
                _, ranked_candidates = next(captions)
                ranked = [(c.caption, float(c.score)) for c in ranked_candidates]
                problem = caption_problem(ranked)
                if problem is not None:  # reported, never published as a caption
                    if self.on_failed is not None:
                        self.on_failed(window, problem)
                    continue
                self.on_result(Captioned(window, ranked, elapsed, finished, steps))
