"""Validation: loss and event-F1 on the run's fixed sets, and keeping the best weights in ``best/``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger
from torch import nn

from edge_dac.evaluation.events import event_f1
from edge_dac.lexicon import load_lexicon
from edge_dac.model import DecodingOptions
from edge_dac.model.decoding import is_broken
from edge_dac.training.config import TrainConfig
from edge_dac.training.data import Batch, ValidationSet
from edge_dac.training.objectives import make_objective
from edge_dac.training.processes import Processes
from edge_dac.training.rundir import RunLog, save_best
from edge_dac.training.tagger import EventTagger

_VAL_SEED = 10_000  # generator seed of the validation loss's random draws (noise levels, noise)


@torch.no_grad()
def validate(model: nn.Module, sets: list[ValidationSet], config: TrainConfig, device, autocast) -> dict:
    """Loss and event-F1 on each fixed set; keys like ``val/loss``, ``train_probe/event_f1``."""
    model.eval()
    objective = make_objective(model, config)
    lexicon = load_lexicon()
    results: dict[str, Any] = {}
    size = config.validation.batch_size
    for subset in sets:
        generator = torch.Generator(device=device).manual_seed(_VAL_SEED)
        totals, predicted, examples, detected = {}, [], [], []
        for start in range(0, len(subset), size):
            stop = min(start + size, len(subset))
            mel = torch.from_numpy(subset.mel[start:stop].astype(np.float32)).to(device)
            audio = subset.audio[start:stop].astype(np.float32)
            batch = Batch(
                captions=[c[0] for c in subset.captions[start:stop]],
                labels=subset.labels[start:stop],
                audio=torch.from_numpy(audio),
            )
            with autocast:
                losses = objective(mel, *objective.inputs(batch, device), generator=generator)
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value) * (stop - start)
            if isinstance(model, EventTagger):
                predicted += _present(model.clip_probabilities(mel), model.classes)
            else:
                options = DecodingOptions(
                    steps=config.validation.decoding_steps, candidates=config.validation.candidates, seed=0
                )
                best = [candidates[0].caption for candidates in model.generate(audio, options)]
                predicted += [lexicon.labels_in_caption(caption) for caption in best]
                examples += best
                if model.events is not None:  # the event head's own hearing, apart from the captions
                    _, clip = model.detect_events(model.encoder(mel), model.fit_length(batch.audio.to(device)))
                    detected += _present(clip, model.dims.event_classes)
        for name, value in totals.items():
            results[f"{subset.name}/{'loss' if name == 'total' else name}"] = value / len(subset)
        scores = event_f1(predicted, subset.labels)
        results[f"{subset.name}/event_f1"] = scores["f1"]
        results[f"{subset.name}/event_precision"] = scores["precision"]
        results[f"{subset.name}/event_recall"] = scores["recall"]
        if detected:
            results[f"{subset.name}/sed_f1"] = event_f1(detected, subset.labels)["f1"]
        if examples:
            results[f"{subset.name}/broken"] = sum(map(is_broken, examples)) / len(examples)
            results[f"{subset.name}/examples"] = [
                {"generated": g, "reference": r[0]} for g, r in zip(examples[:3], subset.captions[:3], strict=False)
            ]
    return results


def _present(clip: torch.Tensor, classes) -> list[set[str]]:
    """The classes each clip holds, by (batch, classes) probabilities above 0.5."""
    return [{classes[i] for i in torch.nonzero(row > 0.5).flatten().tolist()} for row in clip]


def score_of(metrics: dict, config: TrainConfig) -> float | None:
    """Higher is better: val event-F1, or minus val loss."""
    key = "val/event_f1" if config.checkpoint.best_metric == "event_f1" else "val/loss"
    if key not in metrics:
        return None
    return metrics[key] if config.checkpoint.best_metric == "event_f1" else -metrics[key]


class Validator:
    """Validation rounds on rank 0 (the other ranks do nothing): each is logged to the console and
    the run's log, and weights that beat ``best_score`` are saved to ``best/``."""

    def __init__(
        self,
        sets: list[ValidationSet],
        config: TrainConfig,
        procs: Processes,
        autocast,
        log: RunLog,
        out: Path,
        best_score: float | None,
    ):
        self.sets, self.config, self.procs, self.autocast, self.log, self.out = sets, config, procs, autocast, log, out
        self.best_score = best_score
        self.records: list[dict] = []  # the validation records of this run

    def run(self, model: nn.Module, step: int) -> None:
        if not self.procs.is_main:
            return
        started = time.perf_counter()
        metrics = validate(model, self.sets, self.config, self.procs.device, self.autocast)
        metrics["val/seconds"] = time.perf_counter() - started
        record = {"step": step, **metrics}
        self.records.append(record)
        self.log.write(record)
        numbers = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        logger.info(f"step {step}: {numbers}")
        for example in metrics.get("val/examples", [])[:2]:
            logger.info(f"  val: {example['generated']!r} (reference: {example['reference']!r})")
        score = score_of(metrics, self.config)
        if score is not None and step > 0 and (self.best_score is None or score > self.best_score):
            self.best_score = score
            save_best(self.out, model, step, metrics)
