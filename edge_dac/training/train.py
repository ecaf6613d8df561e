"""``edge-dac train``: the training loop, read top to bottom (nanoGPT style).

    setup: processes (DDP) -> run directory -> data -> model -> optimiser -> resume
    loop:  for each step, for each micro-batch: log-mel -> mask -> loss -> backward
           clip, step, schedule, EMA; log; validate; checkpoint

The parts live next to it: ``processes`` (DDP, mixed precision), ``start`` (data, tokenizer,
model), ``objectives`` (the losses), ``optim`` (optimiser, schedule, EMA), ``validation``,
``rundir`` (the output directory: checkpoints, ``best/``, exact-resume state, metrics.jsonl).

Every random draw of a training step is seeded from (seed, step, shard) (see ``data.py``), so a
resumed run repeats an uninterrupted one exactly, and one process with gradient accumulation
trains the same model as several DDP processes with the same global batch.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from loguru import logger
from torch.utils.data import DataLoader
from tqdm import tqdm

from edge_dac.errors import ConfigError
from edge_dac.model import load_captioner
from edge_dac.training.augment import mask_features
from edge_dac.training.config import TrainConfig
from edge_dac.training.data import StepBatches, derive_seed, keep_batch
from edge_dac.training.objectives import make_objective
from edge_dac.training.optim import learning_rate, make_optimizer, update_ema
from edge_dac.training.processes import autocast_for, setup_processes
from edge_dac.training.rundir import STATE_FILE, RunLog, load_checkpoint, open_run, save_checkpoint
from edge_dac.training.start import build_model, load_data
from edge_dac.training.validation import Validator

__all__ = ["STATE_FILE", "TrainResult", "train"]


@dataclass
class TrainResult:
    out: Path
    step: int
    history: list[dict]  # logged training records of this run
    validations: list[dict]
    best_score: float | None


def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    init: str | Path | None = None,
    grow_vocab: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    max_minutes: float | None = None,
) -> TrainResult:
    """Train (or finetune, with ``init``) as ``config`` says, writing everything to ``out``.

    ``stop_after``: leave after that many steps of this run (with a checkpoint), as if interrupted;
    ``resume`` then continues from the newest checkpoint exactly where it stopped.
    ``max_minutes``: the same, after that much wall time (a rented machine's lease); the step is
    validated and checkpointed, so ``best/`` holds the best weights seen so far, and the learning-rate
    schedule is squeezed so that its cosine ends by then (so such a run is not bit-reproducible).
    """
    deadline = time.monotonic() + 60 * max_minutes if max_minutes else None
    out = Path(out)
    procs = setup_processes(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    resume_from = open_run(out, config, resume, procs)
    shards = config.shards(procs.world_size)
    accumulation = shards // procs.world_size
    micro = config.micro_batch(procs.world_size)

    # Model dims before the tokenizer exists: only the front end matters for the feature caches.
    initial = load_captioner(init) if init else None
    if initial is not None and config.stage != "caption":
        raise ConfigError("--init finetunes a captioner; it cannot start a `stage: tagger` run")
    cache_dims = initial.dims if initial is not None else config.dims(vocab_size=8)
    data = load_data(config, cache_dims, out, procs, shards, progress)

    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = build_model(config, data, cache_dims, initial, grow_vocab, out, procs)
    if initial is not None:
        logger.info(f"finetuning {init}: its dims and tokenizer are kept (the config's model section is not used)")
    model.to(procs.device)
    ema = copy.deepcopy(model).eval() if config.optim.ema_decay > 0 else None
    averaged = ema if ema is not None else model  # the weights that are validated and saved
    objective = make_objective(model, config).to(procs.device)
    wrapped = procs.wrap(objective)
    optimizer = make_optimizer(objective, config.optim.learning_rate, config.optim.weight_decay)
    autocast, scaler = autocast_for(config, procs.device)

    start_step, best_score = 0, None
    if resume_from is not None:
        start_step, best_score = load_checkpoint(resume_from, model, ema, optimizer, scaler)
        if procs.is_main:
            logger.info(f"resuming {out} at step {start_step}")
    log = RunLog(out, config, procs.is_main, start_step if resume_from is not None else None)
    validator = Validator(data.validation, config, procs, autocast, log, out, best_score)

    if procs.is_main:
        parameters = sum(p.numel() for p in model.parameters())
        logger.info(
            f"{config.stage} {model.dims.kind if config.stage == 'caption' else 'encoder'}: "
            f"{parameters / 1e6:.2f} M parameters on {procs.device} x{procs.world_size}; {data.description}; "
            f"global batch {config.optim.batch_size} = {procs.world_size} process(es) x {accumulation} x {micro}"
        )
    loader = DataLoader(
        StepBatches(data.train, start_step, config.optim.steps, procs.rank, accumulation, micro),
        batch_size=None,
        collate_fn=keep_batch,
        num_workers=config.data.workers,
    )
    batches = iter(loader)
    frontend = model.frontend
    last_step = config.optim.steps if stop_after is None else min(config.optim.steps, start_step + stop_after)
    history: list[dict] = []

    if start_step == 0 and data.validation:
        validator.run(averaged, 0)
    procs.barrier()
    bar = tqdm(
        range(start_step, last_step),
        initial=start_step,
        total=config.optim.steps,
        desc=f"train {config.stage}",
        disable=not (progress and procs.is_main),
        dynamic_ncols=True,
    )
    loop_start = time.monotonic()
    for step in bar:
        schedule_step = step
        if deadline is not None:  # the schedule is squeezed to end by the deadline (a time budget)
            used = (time.monotonic() - loop_start) / max(deadline - loop_start, 1e-9)
            schedule_step = int(procs.from_rank0(max(step, used * config.optim.steps)))
        rate = learning_rate(config, schedule_step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        model.train()
        sums: dict[str, float] = {}
        for index in range(accumulation):
            batch = next(batches)
            shard_seed = derive_seed(config.seed, step, procs.rank * accumulation + index)
            torch.manual_seed(shard_seed)  # dropout: same draws whichever process runs this shard
            generator = torch.Generator(device=procs.device).manual_seed(shard_seed)
            with torch.no_grad():
                mel = batch.mel.to(procs.device) if batch.mel is not None else frontend(batch.audio.to(procs.device))
                mel = mask_features(mel, config.augment, torch.Generator().manual_seed(shard_seed))
            inputs = objective.inputs(batch, procs.device)
            last = index == accumulation - 1
            with wrapped.no_sync() if procs.world_size > 1 and not last else nullcontext():
                with autocast:
                    losses = wrapped(mel, *inputs, generator=generator)
                loss = losses["total"] / accumulation
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) / accumulation
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = (
            float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip))
            if config.optim.grad_clip > 0
            else 0.0
        )
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            update_ema(ema, model, config.optim.ema_decay, step)
        done = step + 1

        if done % config.log.every == 0 or done == config.optim.steps:
            sums = procs.mean(sums)  # the curve of the global batch, as one process would see it
            record = {"step": done, **sums, "lr": rate, "grad_norm": grad_norm}
            history.append(record)
            log.write(record)
            bar.set_postfix(loss=f"{sums['total']:.3f}", lr=f"{rate:.2e}")
        out_of_time = deadline is not None and procs.agree(time.monotonic() > deadline)
        validating = done % config.validation.every == 0 or done == config.optim.steps or out_of_time
        saving = done % config.checkpoint.every == 0 or done in (config.optim.steps, last_step) or out_of_time
        if validating:
            validator.run(averaged, done)
        if saving and procs.is_main:
            save_checkpoint(out, done, model, ema, optimizer, scaler, validator.best_score, config)
        if validating or saving:
            procs.barrier()  # the other ranks wait for rank 0's validation and checkpoint
        if out_of_time:
            if procs.is_main:
                logger.info(f"--max-minutes {max_minutes:g} reached at step {done}; --resume continues")
            last_step = done
            break
    bar.close()
    log.close()
    return TrainResult(out, last_step, history, validator.records, validator.best_score)
