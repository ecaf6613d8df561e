"""What ``edge-dac eval`` writes: the content of metrics.json (model, data, decoding, metrics, speed,
sweep, timing, environment) and the lines of captions.jsonl, then both with report.md and the plots."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from edge_dac import __version__
from edge_dac.data.datasets import CaptionItem, Manifest
from edge_dac.engines import CaptionEngine
from edge_dac.evaluation.scoring import true_event_labels
from edge_dac.evaluation.speed import SpeedResult
from edge_dac.lexicon import Lexicon
from edge_dac.model.decoding import Candidate, DecodingOptions


class Stopwatch:
    """Wall and CPU seconds per stage. CPU seconds (this process, all threads) say more than wall
    time on a shared machine; METEOR's Java child shows in wall time only."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._start = (time.perf_counter(), time.process_time())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.times[f"{name}_s"] = round(time.perf_counter() - wall, 2)
        self.times[f"{name}_cpu_s"] = round(time.process_time() - cpu, 2)

    def total(self) -> dict[str, float]:
        wall, cpu = self._start
        total = {"total_s": round(time.perf_counter() - wall, 2), "total_cpu_s": round(time.process_time() - cpu, 2)}
        return {**self.times, **total}


def model_summary(engine: CaptionEngine, model_dir: Path) -> dict:
    captioner = engine.captioner
    config = json.loads((model_dir / "config.json").read_text())
    return {
        "path": str(model_dir),
        "id": engine.model_id,
        "kind": captioner.dims.kind,
        "parameters": sum(p.numel() for p in captioner.parameters()),
        "dims": captioner.dims.to_dict(),
        "metadata": config.get("metadata", {}),
    }


def environment() -> dict:
    return {
        "edge_dac": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def metrics_document(
    *,
    engine: CaptionEngine,
    model_dir: Path,
    manifest: Manifest,
    split: str | None,
    n_clips: int,
    longer_than_window: int,
    decoding: DecodingOptions,
    metrics: dict,
    speed: Sequence[SpeedResult],
    speed_seconds: float,
    sweep_clips: int,
    sweep_rows: list[dict],
    clock: Stopwatch,
) -> dict:
    """The content of metrics.json."""
    return {
        "model": model_summary(engine, model_dir),
        "data": {
            "manifest": str(manifest.path),
            "format": manifest.format,
            "split": split,
            "n_clips": n_clips,
            "skipped_unreadable": manifest.skipped,
            "longer_than_window": longer_than_window,
        },
        "decoding": {**asdict(decoding), "backend": engine.backend, "precision": engine.precision},
        "metrics": metrics,
        "speed": {
            "threads": 1,
            "seconds_per_configuration": speed_seconds,
            "results": [r.to_dict() for r in speed],
        },
        "sweep": {"n_clips": sweep_clips, "rows": sweep_rows},
        "timing": clock.total(),
        "environment": environment(),
    }


def _candidate_record(candidate: Candidate) -> dict:
    # A caption with no tokens has score -inf, which strict JSON cannot hold.
    score = round(candidate.score, 4) if math.isfinite(candidate.score) else None
    return {"caption": candidate.caption, "score": score}


def clip_records(
    items: Sequence[CaptionItem], predictions: Sequence[Sequence[Candidate]], lexicon: Lexicon
) -> list[dict]:
    """The lines of captions.jsonl: each clip's references, candidates, and true and predicted events."""
    clips = []
    for item, candidates in zip(items, predictions, strict=True):
        truth = true_event_labels(item, lexicon)
        clips.append(
            {
                "id": item.id,
                "audio": str(item.audio),
                "references": item.captions,
                "candidates": [_candidate_record(candidate) for candidate in candidates],
                "events": sorted(truth) if truth is not None else None,
                "predicted_events": sorted(lexicon.labels_in_caption(candidates[0].caption)),
            }
        )
    return clips


def write_results(out_dir: Path, result: dict, clips: list[dict], samples: int) -> list[Path]:
    """metrics.json, captions.jsonl, the plots (speed, steps sweep) and report.md; returns their paths."""
    from edge_dac.evaluation.plots import plot_speed, plot_steps
    from edge_dac.evaluation.report import render_report, write_jsonl

    files = [out_dir / "metrics.json", out_dir / "captions.jsonl"]
    files[0].write_text(json.dumps(result, indent=2) + "\n")
    write_jsonl(files[1], clips)
    if result["speed"]["results"]:
        files.append(plot_speed(result["speed"]["results"], out_dir / "speed.png"))
    if result["sweep"]["rows"]:
        files.append(plot_steps(result["sweep"]["rows"], out_dir / "steps.png"))
    report = out_dir / "report.md"
    report.write_text(render_report(result, clips, samples=samples, plots=[f.name for f in files[2:]]))
    files.append(report)
    return files
