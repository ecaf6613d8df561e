"""The run directory: its config, checkpoints (with the exact resume state), ``best/`` and the log.

    config.yaml                the resolved config of the run
    tokenizer.json             trained once, reused on resume (``start.build_tokenizer``)
    metrics.jsonl              one line per logged step and per validation (rank 0)
    tensorboard/               TensorBoard scalars
    checkpoints/step-NNNNNNN/  checkpoint (EMA weights) + trainer_state.pt (exact resume)
    best/                      the checkpoint with the best validation score
    cache/                     log-mels (and validation audio) of fixed data

Only rank 0 writes; every directory is written under a ``.partial`` name and then renamed, so a
crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from loguru import logger
from torch import nn

from edge_dac.errors import EdgeDacError
from edge_dac.model import save_captioner
from edge_dac.training.config import TrainConfig
from edge_dac.training.processes import Processes
from edge_dac.training.tagger import EventTagger, save_tagger

STATE_FILE = "trainer_state.pt"


def checkpoints(out: Path) -> list[Path]:
    """Resumable checkpoints of a run, oldest first."""
    return sorted(p.parent for p in (out / "checkpoints").glob(f"step-*/{STATE_FILE}"))


def open_run(out: Path, config: TrainConfig, resume: bool, procs: Processes) -> Path | None:
    """Create the run directory (rank 0) with its config; returns the checkpoint to resume from.

    A directory holding checkpoints is only continued with ``resume``: every rank refuses, so none
    waits for the others forever."""
    found = checkpoints(out)
    if found and not resume:
        raise EdgeDacError(
            f"{out} already holds checkpoints of a run; pass --resume to continue it, or pick another --out"
        )
    resume_from = found[-1] if resume and found else None
    if procs.is_main:
        if resume and resume_from is None:
            logger.info(f"--resume: no checkpoint in {out} yet, starting from the beginning")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    procs.barrier()
    return resume_from


def save_model(model: nn.Module, path: Path, metadata: dict) -> None:
    if isinstance(model, EventTagger):
        save_tagger(model, path, metadata)
    else:
        save_captioner(model, path, metadata=metadata)


def save_checkpoint(
    out: Path,
    step: int,
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler,
    best_score: float | None,
    config: TrainConfig,
) -> None:
    """``checkpoints/step-NNNNNNN``: the (EMA) weights as a loadable model, and everything an exact
    resume needs; only the newest ``checkpoint.keep`` are kept."""
    final = out / "checkpoints" / f"step-{step:07d}"
    staging = final.with_name(final.name + ".partial")
    save_model(ema if ema is not None else model, staging, {"step": step, "run": str(out)})
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "best_score": best_score,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "config": config.model_dump(mode="json"),
        },
        staging / STATE_FILE,
    )
    _replace_dir(staging, final)
    for old in checkpoints(out)[: -config.checkpoint.keep]:
        shutil.rmtree(old)


def load_checkpoint(
    path: Path, model: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer, scaler
) -> tuple[int, float | None]:
    """Restore a checkpoint's training state (weights, optimiser, random generators) in place;
    returns its step and best validation score."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None and state.get("ema") is not None:
        ema.load_state_dict(state["ema"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return state["step"], state.get("best_score")


def save_best(out: Path, model: nn.Module, step: int, metrics: dict) -> None:
    """``best/``: the weights with the best validation score so far."""
    staging = out / "best.partial"
    save_model(model, staging, {"step": step, "validation": _numbers(metrics), "run": str(out)})
    _replace_dir(staging, out / "best")


def _replace_dir(staging: Path, final: Path) -> None:
    """Put a fully written directory in place (a crash never leaves half a checkpoint)."""
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


def _numbers(metrics: dict) -> dict:
    return {k: round(v, 5) for k, v in metrics.items() if isinstance(v, float)}


class RunLog:
    """metrics.jsonl and TensorBoard on rank 0; nothing elsewhere."""

    def __init__(self, out: Path, config: TrainConfig, enabled: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.is_file():
            # Lines written after the checkpoint we resume from are repeated by this run: drop them.
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()
        if config.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                logger.warning("tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)")
            else:
                self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in record.items():
                if name != "step" and isinstance(value, int | float):
                    self.writer.add_scalar(name if "/" in name else f"train/{name}", value, record["step"])
                elif name.endswith("/examples"):
                    text = "\n\n".join(f"**{e['generated']}** (reference: {e['reference']})" for e in value)
                    self.writer.add_text(name, text, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
