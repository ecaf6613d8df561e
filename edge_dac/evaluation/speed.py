"""Captioning speed on one CPU thread: audios per second (APS) and tokens per second (TPS).

Two stages are timed, each at several batch sizes:

- ``pipeline``: waveform in, ranked captions out (log-mel features + encoder + decoding + ranking),
  what the daemon pays per window;
- ``decode``: the decoder alone on precomputed encoder output (DAC: the denoising steps; AR: greedy
  or beam search), where DAC and AR differ.

TPS counts the tokens the decoder wrote, over every row it decoded (K samples for DAC, B beams for
AR), each up to its first [EOS], before adjacent repeats are collapsed.

One thread, because an edge box runs the captioner beside other work and because multi-threaded
timings on a shared machine mostly measure the neighbours. Each configuration is warmed up, then
repeated until it has run for ``seconds`` (and at least ``min_iterations`` times); the median
iteration time gives the rate, so a stall caused by another process does not skew it.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edge_dac.model.captioner import Captioner
from edge_dac.model.decoding import Candidate, DecodingOptions, DecodingTask, forget_audio

CaptionFn = Callable[[np.ndarray], list[list[Candidate]]]


@dataclass(frozen=True)
class SpeedResult:
    stage: str  # "pipeline" or "decode"
    batch_size: int
    seconds_per_batch: float  # median over the timed iterations
    iterations: int
    tokens_per_batch: int

    @property
    def aps(self) -> float:
        return self.batch_size / self.seconds_per_batch

    @property
    def tps(self) -> float:
        return self.tokens_per_batch / self.seconds_per_batch

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "stage": self.stage,
            "batch_size": self.batch_size,
            "aps": round(self.aps, 3),
            "tps": round(self.tps, 2),
            "ms_per_batch": round(self.seconds_per_batch * 1000, 3),
            "iterations": self.iterations,
            "tokens_per_batch": self.tokens_per_batch,
        }


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def decoding_alone(
    captioner: Captioner, audio: np.ndarray, options: DecodingOptions, runner: Any = None
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A call that runs only the decoder (``DecodingTask.sample``) on ``audio``'s precomputed audio
    side: the encoder output for AR, the backend's cross-attention context for DAC."""
    task = DecodingTask(captioner, options, runner)
    windows = captioner.fit_length(torch.as_tensor(audio, dtype=torch.float32))
    (context, events), noise = task.context(windows), task.noise(windows)
    bias = task.bias(events)
    return lambda: task.sample(context, noise, bias)


def generated_tokens(tokens: torch.Tensor, eos_id: int, pad_id: int) -> int:
    """Tokens before the first [EOS]/[PAD] of each row, summed over all rows (repeats included)."""
    rows = tokens.reshape(-1, tokens.shape[-1])
    ended = (rows == eos_id) | (rows == pad_id)
    # cumsum > 0 marks the end token and everything after it.
    return int((ended.cumsum(dim=-1) == 0).sum())


def batch_of(windows: np.ndarray, batch_size: int) -> np.ndarray:
    """The first ``batch_size`` windows, cycling through them when there are fewer."""
    index = np.arange(batch_size) % len(windows)
    return np.ascontiguousarray(windows[index])


def time_call(
    fn: Callable[[], object], seconds: float, min_iterations: int = 2, warm_up: bool = True
) -> tuple[float, int]:
    """Median seconds per call of ``fn`` (after a warm-up call), and how many calls were timed."""
    if warm_up:
        fn()  # allocator, lazy initialisation, caches
    durations: list[float] = []
    started = time.perf_counter()
    while len(durations) < min_iterations or time.perf_counter() - started < seconds:
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), len(durations)


def measure_speed(
    captioner: Captioner,
    windows: np.ndarray,
    options: DecodingOptions,
    batch_sizes: Sequence[int] = (1, 32),
    stages: Sequence[str] = ("pipeline", "decode"),
    seconds: float = 2.0,
    threads: int = 1,
    caption_fn: CaptionFn | None = None,
    warm_up: bool = False,
    runner: Any = None,
) -> list[SpeedResult]:
    """APS and TPS of each stage at each batch size on ``windows`` (n, samples) of real audio.

    ``caption_fn`` is the whole pipeline (default: ``captioner.generate`` with ``options``); pass an
    engine's ``caption`` to time a compiled backend, with ``warm_up`` so that its first call (which
    may compile) is not timed, and its ``runner`` (``CaptionEngine.runner``) so that ``decode`` times
    that backend's denoiser steps on its precomputed audio context; without one (and for AR models)
    ``decode`` times the eager decoder. The decode stage needs no warm-up call of its own: counting
    the generated tokens runs it on the same shapes first.
    """
    unknown = set(stages) - {"pipeline", "decode"}
    if unknown:
        raise ValueError(f"unknown speed stage(s) {sorted(unknown)}: use 'pipeline' and/or 'decode'")
    if caption_fn is None:
        caption_fn = lambda batch: captioner.generate(batch, options)  # noqa: E731
    def fresh(audio: np.ndarray) -> object:  # independent clips: nothing heard before is reused
        if runner is not None:
            forget_audio(runner)
        return caption_fn(audio)

    results = []
    with torch_threads(threads), torch.inference_mode():
        for batch_size in batch_sizes:
            audio = batch_of(windows, batch_size)
            decode = decoding_alone(captioner, audio, options, runner)
            tokens, _ = decode()
            count = generated_tokens(tokens, captioner.eos_id, captioner.pad_id)
            for stage in stages:
                fn = (lambda audio=audio: fresh(audio)) if stage == "pipeline" else decode
                # Counting the tokens above already ran the decoder (and the eager encoder) on these shapes.
                median, iterations = time_call(fn, seconds, warm_up=warm_up and stage == "pipeline")
                results.append(SpeedResult(stage, batch_size, median, iterations, count))
    return results
