"""The denoising-steps sweep: quality and speed of a DAC model at 1, 2, 4, 8, 16 steps on a subset."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from edge_dac.data.datasets import CaptionItem
from edge_dac.engines import CaptionEngine
from edge_dac.evaluation.captioning import caption_windows
from edge_dac.evaluation.decoding import caption_function
from edge_dac.evaluation.embedder import SentenceEmbedder
from edge_dac.evaluation.options import SWEEP_STEPS
from edge_dac.evaluation.scoring import score_clips
from edge_dac.evaluation.speed import measure_speed
from edge_dac.lexicon import Lexicon, load_lexicon
from edge_dac.model.decoding import DecodingOptions


def step_sweep(
    engine: CaptionEngine,
    windows: np.ndarray,
    items: Sequence[CaptionItem],
    base: DecodingOptions,
    steps: Sequence[int] = SWEEP_STEPS,
    batch_size: int = 32,
    sbert: bool = True,
    embedder: SentenceEmbedder | None = None,
    speed_seconds: float = 1.0,
    lexicon: Lexicon | None = None,
    progress: bool = False,
    speed_engine: CaptionEngine | None = None,
) -> list[dict]:
    """Event-F1, SBERT, CIDEr-D, BLEU-4 and batch-1 speed (1 thread) at each number of denoising steps.

    METEOR is left out here: its Java round trips would cost more than the captioning.
    ``speed_engine`` is timed (default ``engine``; see ``timing.one_thread_engine``).
    """
    speed_engine = speed_engine or engine
    lexicon = lexicon or load_lexicon()
    rows = []
    for count in tqdm(steps, desc="steps sweep", unit="setting", disable=not progress):
        options = dataclasses.replace(base, steps=count)
        caption_fn = caption_function(engine, options)
        predictions = caption_windows(caption_fn, windows, batch_size)
        metrics = score_clips(predictions, items, lexicon, sbert=sbert, meteor=False, embedder=embedder)
        speed = measure_speed(
            speed_engine.captioner, windows, options, batch_sizes=(1,), stages=("pipeline",),
            seconds=speed_seconds, caption_fn=caption_function(speed_engine, options),
            warm_up=speed_engine.backend != "eager",
        )[0]
        rows.append(
            {
                "steps": count,
                "event_f1": metrics.get("event_f1"),
                "sbert_max": metrics.get("sbert_max"),
                "cider_d": metrics["cider_d"],
                "bleu_4": metrics["bleu_4"],
                "aps_pipeline_b1": round(speed.aps, 3),
                "tps_pipeline_b1": round(speed.tps, 2),
            }
        )
    return rows
