"""``edge-dac train``: the training loop, read top to bottom (nanoGPT style).

    setup: processes (DDP) -> data -> tokenizer -> model -> optimiser -> resume
    loop:  for each step, for each micro-batch: log-mel -> mask -> loss -> backward
           clip, step, schedule, EMA; log; validate; checkpoint

Output directory::

    config.yaml                the resolved config of the run
    tokenizer.json             trained once, reused on resume
    metrics.jsonl              one line per logged step and per validation (rank 0)
    tensorboard/               TensorBoard scalars
    checkpoints/step-NNNNNNN/  checkpoint (EMA weights) + trainer_state.pt (exact resume)
    best/                      the checkpoint with the best validation score
    cache/                     log-mels (and validation audio) of fixed data

Every random draw of a training step is seeded from (seed, step, shard) (see ``data.py``), so a
resumed run repeats an uninterrupted one exactly, and one process with gradient accumulation
trains the same model as several DDP processes with the same global batch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from loguru import logger
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from edge_dac.const import default_cache_dir
from edge_dac.data.build import select_rows
from edge_dac.data.catalog import load_catalog
from edge_dac.data.datasets import CaptionItem, load_manifest
from edge_dac.data.mixer import SceneMixer
from edge_dac.errors import ConfigError, EdgeDacError
from edge_dac.evaluation.events import event_f1
from edge_dac.lexicon import load_lexicon
from edge_dac.model import Captioner, DecodingOptions, load_captioner, save_captioner, train_tokenizer
from edge_dac.model.decoding import is_broken
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.encoder import EventHead
from edge_dac.model.tokenizer import load_tokenizer, save_tokenizer
from edge_dac.training.augment import mask_features
from edge_dac.training.config import TrainConfig
from edge_dac.training.data import (
    Batch,
    CachedClips,
    MixedScenes,
    StepBatches,
    ValidationSet,
    derive_seed,
    frame_targets,
    keep_batch,
    labels_of_item,
    manifest_features,
    scene_events,
    validation_items,
    validation_scenes,
)
from edge_dac.training.fit import make_optimizer, warmup_cosine
from edge_dac.training.tagger import EventTagger, load_encoder_weights, multi_hot, save_tagger
from edge_dac.training.vocabulary import check_vocabulary, grow_vocabulary, refuse_unknown

STATE_FILE = "trainer_state.pt"
_VAL_SEED = 10_000  # generator seed of the validation loss's random draws (noise levels, noise)


# --- processes -------------------------------------------------------------------------------------


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_processes(config: TrainConfig) -> Processes:
    """One process, or one of several started by torchrun (WORLD_SIZE, RANK, LOCAL_RANK set)."""
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise EdgeDacError("device: cuda asked for, but torch sees no CUDA GPU; set device: cpu or auto")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def autocast_for(config: TrainConfig, device: torch.device):
    """Mixed precision on GPU only (bf16 by default); CPU trains in fp32."""
    precision = config.precision
    if device.type != "cuda" or precision == "fp32":
        return nullcontext(), None
    if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


# --- objectives: what a micro-batch's loss is ------------------------------------------------------


class CaptionObjective(nn.Module):
    """The captioner's training loss from log-mels (so features can be masked or cached); a module
    so that DistributedDataParallel can wrap it.

    With an event head (``loss.sed_weight`` / ``loss.tag_weight``), frame-level detection against
    the mixer's event times and clip-level tagging add binary cross-entropies, each summed over the
    classes (a BCE averaged over ~175 classes, ~3 of them present, is ~50x smaller than the caption
    loss and teaches the shared encoder nothing; docs/dac-recipe.md).
    """

    def __init__(self, captioner: Captioner, config: TrainConfig):
        super().__init__()
        self.captioner = captioner
        self.loss_options = config.loss.model_dump(exclude={"tag_weight", "sed_weight"})
        self.sed_weight, self.tag_weight = config.loss.sed_weight, config.loss.tag_weight

    def forward(
        self,
        mel: torch.Tensor,
        tokens: torch.Tensor,
        weights: torch.Tensor,
        codes: torch.Tensor | None = None,
        clip_targets: torch.Tensor | None = None,
        frame_targets: torch.Tensor | None = None,
        generator=None,
    ) -> dict:
        features = self.captioner.encoder(mel)
        decoder = self.captioner.decoder
        if isinstance(decoder, DiffusionDecoder):
            losses = dict(
                vars(decoder.loss(tokens, features, weights, generator=generator, codes=codes, **self.loss_options))
            )
        else:
            losses = dict(vars(decoder.loss(tokens, features)))
        head = self.captioner.events
        if head is not None and clip_targets is not None:
            frame_logits = head(features).float()
            clip = EventHead.clip_probabilities(frame_logits).clamp(1e-6, 1 - 1e-6)
            losses["tag_bce"] = F.binary_cross_entropy(clip, clip_targets, reduction="none").sum(-1).mean()
            losses["total"] = losses["total"] + self.tag_weight * losses["tag_bce"]
            if frame_targets is not None:
                bce = F.binary_cross_entropy_with_logits(frame_logits, frame_targets, reduction="none")
                losses["sed_bce"] = bce.sum(-1).mean()
                losses["total"] = losses["total"] + self.sed_weight * losses["sed_bce"]
        return losses

    def inputs(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        captioner = self.captioner
        tokens, weights = captioner.caption_tokens(batch.captions)
        codes = torch.tensor(batch.codes) if batch.codes is not None and captioner.dims.wording_codes else None
        clip = frames = None
        if captioner.events is not None:
            classes = captioner.dims.event_classes
            clip = multi_hot(batch.labels, list(classes))
            if batch.events is not None:
                dims = captioner.dims
                frames = frame_targets(batch.events, classes, dims.max_encoder_frames, dims.encoder_frame_seconds)
        return tuple(None if x is None else x.to(device) for x in (tokens, weights, codes, clip, frames))


class TaggerObjective(nn.Module):
    """Binary cross-entropy of the event tagger over the classes present in each clip."""

    def __init__(self, tagger: EventTagger):
        super().__init__()
        self.tagger = tagger

    def forward(self, mel: torch.Tensor, targets: torch.Tensor, generator=None) -> dict:
        logits = self.tagger(mel).float()
        bce = F.binary_cross_entropy_with_logits(logits, targets)
        accuracy = ((logits > 0) == (targets > 0.5)).float().mean()
        return {"total": bce, "bce": bce, "accuracy": accuracy}

    def inputs(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (self.tagger.targets(batch.labels).to(device),)


def make_objective(model: nn.Module, config: TrainConfig) -> CaptionObjective | TaggerObjective:
    """The training loss of a captioner or a tagger."""
    return CaptionObjective(model, config) if isinstance(model, Captioner) else TaggerObjective(model)


# --- the learning-rate schedule and the weight average ---------------------------------------------


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to min_learning_rate at the last step."""
    o = config.optim
    return o.learning_rate * warmup_cosine(step, o.warmup_steps, o.steps, floor=o.min_learning_rate / o.learning_rate)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Exponential moving average of the weights; the decay ramps up over the first steps so the
    average does not drag the random initial weights along for thousands of steps."""
    decay = min(decay, (1 + step) / (10 + step))
    for average, current in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if average.dtype.is_floating_point:
            average.lerp_(current, 1 - decay)


# --- setup: data, tokenizer, model ------------------------------------------------------------------


@dataclass
class Data:
    train: MixedScenes | CachedClips
    validation: list[ValidationSet]
    captions: list[str]  # training captions: the tokenizer's text and the vocabulary check
    classes: list[str]  # event classes of the training data (tagger)
    description: str


def _cache_dir(config: TrainConfig) -> Path:
    return Path(config.data.cache_dir).expanduser() if config.data.cache_dir else default_cache_dir()


def make_mixer(config: TrainConfig, split: str, rows=None) -> SceneMixer:
    from edge_dac.data.build import CorpusConfig

    if rows is None:
        corpus = CorpusConfig(packages=config.data.packages)
        rows = select_rows(corpus, _cache_dir(config), config.data.catalog)
    return SceneMixer(rows, _cache_dir(config), config.data.scene, split)


def load_data(config: TrainConfig, dims_for_cache, out: Path, procs: Processes, shards: int, progress: bool) -> Data:
    """The training source and the fixed validation sets (built on rank 0, cached for the others)."""
    cache = out / "cache"
    samples = int(round(config.model.max_audio_seconds * config.model.sample_rate))
    if config.data.manifest:
        return _manifest_data(config, dims_for_cache, cache, procs, shards, progress)
    if config.data.catalog:
        load_catalog(config.data.catalog)  # fails early with the catalog's one-line error
    train_mixer = make_mixer(config, "train")
    rows = train_mixer.rows
    if config.data.preload:
        train_mixer.preload(progress=progress and procs.is_main)
    # Unaugmented scenes of the same rows (tokenizer text, train probe), sharing the decoded sources.
    plain = make_mixer(config, "train", rows=rows)
    plain.bank = train_mixer.bank
    source = MixedScenes(
        train_mixer, config.seed, samples, config.augment, config.data.scene_pool, config.data.caption_families
    )
    classes = sorted(
        {*train_mixer.pools.foreground, *train_mixer.pools.background, *(c for _, c in train_mixer.pools.speech)}
    )
    # The tokenizer's text: captions of scenes drawn the way training draws them (unaugmented).
    # Every rank mixes them (a few seconds) so that each can check a finetuning vocabulary itself.
    count = config.tokenizer.scenes
    if config.data.scene_pool is None:
        seeds = [derive_seed(config.seed, 9, i) for i in range(count)]
    else:
        seeds = [source.pool_seed(i) for i in range(min(count, config.data.scene_pool))]
    captions: list[str] = []
    for seed in tqdm(seeds, desc="tokenizer scenes", disable=not (progress and procs.is_main), leave=False):
        captions += plain.mix(seed).captions
    validation: list[ValidationSet] = []
    if procs.is_main:
        val_seeds = [derive_seed(config.validation.seed, 7, i) for i in range(config.validation.scenes)]
        validation.append(validation_scenes("val", make_mixer(config, "val"), val_seeds, dims_for_cache, cache))
        if config.validation.train_probe_scenes:
            # Scenes of recordings the model trains on: its fit (the gate), next to val's generalisation.
            n = config.validation.train_probe_scenes
            probe = (
                [source.pool_seed(i) for i in range(n)]
                if config.data.scene_pool
                else [derive_seed(config.validation.seed, 8, i) for i in range(n)]
            )
            validation.append(validation_scenes("train_probe", plain, probe, dims_for_cache, cache))
    pool = f", pool of {config.data.scene_pool} scenes" if config.data.scene_pool else ", fresh scenes every step"
    description = f"mixer: {len(rows)} catalog rows, {len(classes)} train classes{pool}"
    return Data(source, validation, captions, classes, description)


def _manifest_data(config: TrainConfig, dims, cache: Path, procs: Processes, shards: int, progress: bool) -> Data:
    manifest = load_manifest(config.data.manifest, config.data.audio_root)
    items = [item for item in manifest.items if item.split in (None, "train")] or manifest.items
    if config.data.val_manifest:
        val_items = load_manifest(config.data.val_manifest, config.data.audio_root).items
    else:
        val_items = manifest.split("val") or items  # no held-out items: validate on (some) training items
    val_items = _spread(val_items, config.validation.scenes)
    if procs.is_main:  # rank 0 decodes and caches; the others then read the cache
        manifest_features(items, dims, cache, progress)
    procs.barrier()
    mel = manifest_features(items, dims, cache, progress=False)
    labels = [labels_of_item(item) for item in items]
    # Frame-level targets only where every clip's events carry their times (a built corpus).
    timed = all(item.events and all("onset" in e and "offset" in e for e in item.events) for item in items)
    events = [scene_events(item.events) for item in items] if timed else None
    source = CachedClips(mel, [item.captions for item in items], labels, config.seed, shards, events)
    validation = [validation_items("val", val_items, dims, cache)] if procs.is_main else []
    captions = [c for item in items for c in item.captions]
    classes = sorted(set().union(*labels))
    return Data(source, validation, captions, classes, f"manifest {manifest.path}: {len(items)} training clips")


def _spread(items: list[CaptionItem], count: int) -> list[CaptionItem]:
    """At most ``count`` items, evenly spread over the list (deterministic)."""
    if len(items) <= count:
        return list(items)
    return [items[int(i * len(items) / count)] for i in range(count)]


def build_tokenizer(config: TrainConfig, data: Data, out: Path, procs: Processes):
    """Trained once on rank 0 from the training captions, saved in the run directory."""
    path = out / "tokenizer.json"
    if procs.is_main and not path.is_file():
        save_tokenizer(train_tokenizer(data.captions, config.tokenizer.vocab_size), path)
    procs.barrier()
    return load_tokenizer(path)


# --- checkpoints -------------------------------------------------------------------------------------


def checkpoints(out: Path) -> list[Path]:
    """Resumable checkpoints of a run, oldest first."""
    return sorted(p.parent for p in (out / "checkpoints").glob(f"step-*/{STATE_FILE}"))


def save_model(model: nn.Module, path: Path, metadata: dict) -> None:
    if isinstance(model, EventTagger):
        save_tagger(model, path, metadata)
    else:
        save_captioner(model, path, metadata=metadata)


def _replace_dir(staging: Path, final: Path) -> None:
    """Put a fully written directory in place (a crash never leaves half a checkpoint)."""
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


# --- validation ---------------------------------------------------------------------------------------


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
            batch = Batch(captions=[c[0] for c in subset.captions[start:stop]], labels=subset.labels[start:stop])
            with autocast:
                losses = objective(mel, *objective.inputs(batch, device), generator=generator)
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + float(value) * (stop - start)
            if isinstance(model, EventTagger):
                logits = model(mel)
                predicted += [{model.classes[i] for i in torch.nonzero(row > 0).flatten().tolist()} for row in logits]
            else:
                options = DecodingOptions(
                    steps=config.validation.decoding_steps, candidates=config.validation.candidates, seed=0
                )
                audio = subset.audio[start:stop].astype(np.float32)
                best = [candidates[0].caption for candidates in model.generate(audio, options)]
                predicted += [lexicon.labels_in_caption(caption) for caption in best]
                examples += best
                if model.events is not None:  # the encoder's own hearing, apart from the captions
                    _, clip = model.detect_events(model.encoder(mel))
                    classes = model.dims.event_classes
                    detected += [{classes[i] for i in torch.nonzero(row > 0.5).flatten().tolist()} for row in clip]
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


def score_of(metrics: dict, config: TrainConfig) -> float | None:
    """Higher is better: val event-F1, or minus val loss."""
    key = "val/event_f1" if config.checkpoint.best_metric == "event_f1" else "val/loss"
    if key not in metrics:
        return None
    return metrics[key] if config.checkpoint.best_metric == "event_f1" else -metrics[key]


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    out: Path
    step: int
    history: list[dict]  # logged training records of this run
    validations: list[dict]
    best_score: float | None


class _Log:
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
    resume_from = checkpoints(out)[-1] if resume and checkpoints(out) else None
    if checkpoints(out) and not resume:  # every rank refuses, so none waits for the others forever
        raise EdgeDacError(
            f"{out} already holds checkpoints of a run; pass --resume to continue it, or pick another --out"
        )
    if procs.is_main:
        if resume and resume_from is None:
            logger.info(f"--resume: no checkpoint in {out} yet, starting from the beginning")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    procs.barrier()
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
    model: nn.Module
    if config.stage == "tagger":
        model = EventTagger(cache_dims, data.classes)
    elif initial is not None:
        model = _finetune_start(initial, data, config, grow_vocab, out, procs)
    else:
        tokenizer = build_tokenizer(config, data, out, procs)
        model = Captioner(config.dims(len(tokenizer), tuple(data.classes)), tokenizer)
    if initial is not None:
        logger.info(f"finetuning {init}: its dims and tokenizer are kept (the config's model section is not used)")
    elif config.model.encoder_init:
        copied = load_encoder_weights(model.encoder, config.model.encoder_init)
        logger.info(f"encoder initialised from {config.model.encoder_init} ({copied} tensors)")
    model.to(procs.device)
    ema = copy.deepcopy(model).eval() if config.optim.ema_decay > 0 else None
    objective = make_objective(model, config).to(procs.device)
    wrapped: nn.Module = objective
    if procs.world_size > 1:
        device_ids = [procs.device.index] if procs.device.type == "cuda" else None
        wrapped = DistributedDataParallel(objective, device_ids=device_ids)
    optimizer = make_optimizer(objective, config.optim.learning_rate, config.optim.weight_decay)
    autocast, scaler = autocast_for(config, procs.device)

    start_step, best_score = 0, None
    if resume_from is not None:
        state = torch.load(resume_from / STATE_FILE, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_step, best_score = state["step"], state.get("best_score")
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if procs.is_main:
            logger.info(f"resuming {out} at step {start_step}")
    log = _Log(out, config, procs.is_main, start_step if resume_from is not None else None)

    parameters = sum(p.numel() for p in model.parameters())
    if procs.is_main:
        logger.info(
            f"{config.stage} {getattr(model, 'dims', cache_dims).kind if config.stage == 'caption' else 'encoder'}: "
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
    validations: list[dict] = []

    def run_validation(step: int) -> None:
        nonlocal best_score
        if not procs.is_main:
            return
        evaluated = ema if ema is not None else model
        started = time.perf_counter()
        metrics = validate(evaluated, data.validation, config, procs.device, autocast)
        metrics["val/seconds"] = time.perf_counter() - started
        record = {"step": step, **metrics}
        validations.append(record)
        log.write(record)
        numbers = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        logger.info(f"step {step}: {numbers}")
        for example in metrics.get("val/examples", [])[:2]:
            logger.info(f"  val: {example['generated']!r} (reference: {example['reference']!r})")
        score = score_of(metrics, config)
        if score is not None and step > 0 and (best_score is None or score > best_score):
            best_score = score
            staging = out / "best.partial"
            save_model(evaluated, staging, {"step": step, "validation": _numbers(metrics), "run": str(out)})
            _replace_dir(staging, out / "best")

    def save_checkpoint(step: int) -> None:
        if not procs.is_main:
            return
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

    if start_step == 0 and procs.is_main and data.validation:
        run_validation(0)
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
            schedule_step = int(_from_rank0(max(step, used * config.optim.steps), procs))
        rate = learning_rate(config, schedule_step)
        for group in optimizer.param_groups:
            group["lr"] = rate
        model.train()
        sums: dict[str, float] = {}
        for index in range(accumulation):
            batch = next(batches)
            shard = procs.rank * accumulation + index
            shard_seed = derive_seed(config.seed, step, shard)
            torch.manual_seed(shard_seed)  # dropout: same draws whichever process runs this shard
            generator = torch.Generator(device=procs.device).manual_seed(shard_seed)
            with torch.no_grad():
                mel = batch.mel.to(procs.device) if batch.mel is not None else frontend(batch.audio.to(procs.device))
                mel = mask_features(mel, config.augment, torch.Generator().manual_seed(shard_seed))
            inputs = objective.inputs(batch, procs.device)
            last = index == accumulation - 1
            sync = wrapped.no_sync() if procs.world_size > 1 and not last else nullcontext()
            with sync:
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
            if procs.world_size > 1:  # the curve of the global batch, as one process would see it
                values = torch.tensor(list(sums.values()), dtype=torch.float64)
                dist.all_reduce(values)
                sums = dict(zip(sums, (values / procs.world_size).tolist(), strict=True))
            record = {"step": done, **sums, "lr": rate, "grad_norm": grad_norm}
            history.append(record)
            log.write(record)
            bar.set_postfix(loss=f"{sums['total']:.3f}", lr=f"{rate:.2e}")
        out_of_time = deadline is not None and _agree(time.monotonic() > deadline, procs)
        validating = done % config.validation.every == 0 or done == config.optim.steps or out_of_time
        saving = done % config.checkpoint.every == 0 or done in (config.optim.steps, last_step) or out_of_time
        if validating:
            run_validation(done)
        if saving:
            save_checkpoint(done)
        if validating or saving:
            procs.barrier()  # the other ranks wait for rank 0's validation and checkpoint
        if out_of_time:
            if procs.is_main:
                logger.info(f"--max-minutes {max_minutes:g} reached at step {done}; --resume continues")
            last_step = done
            break
    bar.close()
    log.close()
    return TrainResult(out, last_step, history, validations, best_score)


def _from_rank0(value: float, procs: Processes) -> float:
    """Rank 0's value on every rank: decisions from clocks (which differ) must be the same everywhere."""
    if procs.world_size == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=procs.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def _agree(flag: bool, procs: Processes) -> bool:
    """True on every rank when rank 0 says so (all ranks must stop at the same step)."""
    return bool(_from_rank0(float(flag), procs))


def _finetune_start(
    initial: Captioner, data: Data, config: TrainConfig, grow: bool, out: Path, procs: Processes
) -> Captioner:
    """The checkpoint to finetune, its tokenizer kept (and grown on request)."""
    source = config.data.manifest or "training data"
    words = check_vocabulary(initial.tokenizer, data.captions, source)
    if words and not grow:
        raise refuse_unknown(words, source)
    captioner = grow_vocabulary(initial, words) if words else initial
    captioner = add_heads(captioner, config, data.classes)
    if words and procs.is_main:
        logger.info(f"vocabulary grown by {len(words)} token(s): {', '.join(words[:10])}")
    if procs.is_main:
        save_tokenizer(captioner.tokenizer, out / "tokenizer.json")
    return captioner.train()


def add_heads(captioner: Captioner, config: TrainConfig, classes: list[str]) -> Captioner:
    """The checkpoint to finetune, with what the config asks for and it lacks: wording codes
    (``model.wording_codes``, DAC) and an event head (``loss.sed_weight``/``tag_weight``) for the
    training data's classes. Existing heads are kept as they are: finetuning continues them."""
    dims = captioner.dims
    changes: dict[str, Any] = {}
    if dims.kind == "dac" and config.model.wording_codes and not dims.wording_codes:
        changes["wording_codes"] = config.model.wording_codes
    if config.loss.event_head and not dims.event_classes:
        changes["event_classes"] = tuple(classes)
    elif dims.event_classes and set(classes) - set(dims.event_classes):
        unknown = sorted(set(classes) - set(dims.event_classes))
        logger.warning(
            f"{len(unknown)} training class(es) are not in the checkpoint's event head and are not detected: "
            f"{', '.join(unknown[:5])}"
        )
    if not changes:
        return captioner
    upgraded = Captioner(dataclasses.replace(dims, **changes), captioner.tokenizer)
    missing, unexpected = upgraded.load_state_dict(captioner.state_dict(), strict=False)
    assert not unexpected, unexpected
    logger.info(f"new head(s) for finetuning: {', '.join(changes)} ({len(missing)} new tensors)")
    return upgraded


def _numbers(metrics: dict) -> dict:
    return {k: round(v, 5) for k, v in metrics.items() if isinstance(v, float)}
