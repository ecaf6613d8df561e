"""What a run starts from: its data (training source and fixed validation sets), its tokenizer and
its model (new, or a checkpoint to finetune with the heads the config asks for)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from torch import nn
from tqdm import tqdm

from edge_dac.const import default_cache_dir
from edge_dac.data.build import select_rows
from edge_dac.data.catalog import load_catalog
from edge_dac.data.datasets import CaptionItem, load_manifest
from edge_dac.data.mixer import SceneMixer
from edge_dac.model import Captioner, train_tokenizer
from edge_dac.model.tokenizer import load_tokenizer, save_tokenizer
from edge_dac.training.config import TrainConfig
from edge_dac.training.data import (
    CachedClips,
    MixedScenes,
    ValidationSet,
    derive_seed,
    labels_of_item,
    manifest_features,
    scene_events,
    validation_items,
    validation_scenes,
)
from edge_dac.training.processes import Processes
from edge_dac.training.tagger import EventTagger, load_encoder_weights
from edge_dac.training.vocabulary import check_vocabulary, grow_vocabulary, refuse_unknown

# --- data -------------------------------------------------------------------------------------------


@dataclass
class Data:
    train: MixedScenes | CachedClips
    validation: list[ValidationSet]
    captions: list[str]  # training captions: the tokenizer's text and the vocabulary check
    classes: list[str]  # event classes of the training data (tagger)
    description: str


def _cache_dir(config: TrainConfig) -> Path:
    return Path(config.data.cache_dir).expanduser() if config.data.cache_dir else default_cache_dir()


def make_mixer(config: TrainConfig, split: str) -> SceneMixer:
    from edge_dac.data.build import CorpusConfig

    rows = select_rows(CorpusConfig(packages=config.data.packages), _cache_dir(config), config.data.catalog)
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
    if config.data.preload:
        train_mixer.preload(progress=progress and procs.is_main)
    plain = train_mixer.twin()  # unaugmented scenes of the same rows: tokenizer text, train probe
    source = MixedScenes(
        train_mixer, config.seed, samples, config.augment, config.data.scene_pool, config.data.caption_families
    )
    classes = train_mixer.classes()
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
    description = f"mixer: {len(train_mixer.rows)} catalog rows, {len(classes)} train classes{pool}"
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


# --- tokenizer and model ------------------------------------------------------------------------------


def build_tokenizer(config: TrainConfig, data: Data, out: Path, procs: Processes):
    """Trained once on rank 0 from the training captions, saved in the run directory."""
    path = out / "tokenizer.json"
    if procs.is_main and not path.is_file():
        save_tokenizer(train_tokenizer(data.captions, config.tokenizer.vocab_size), path)
    procs.barrier()
    return load_tokenizer(path)


def build_model(
    config: TrainConfig, data: Data, dims, initial: Captioner | None, grow: bool, out: Path, procs: Processes
) -> nn.Module:
    """The model to train: an event tagger (``stage: tagger``, encoder dims ``dims``), the checkpoint
    ``initial`` to finetune, or a new captioner (its encoder optionally from ``model.encoder_init``)."""
    model: nn.Module
    if config.stage == "tagger":
        model = EventTagger(dims, data.classes)
    elif initial is not None:
        return _finetune_start(initial, data, config, grow, out, procs)
    else:
        tokenizer = build_tokenizer(config, data, out, procs)
        model = Captioner(config.dims(len(tokenizer), tuple(data.classes)), tokenizer)
    if config.model.encoder_init:
        copied = load_encoder_weights(model.encoder, config.model.encoder_init)
        logger.info(f"encoder initialised from {config.model.encoder_init} ({copied} tensors)")
    return model


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
        changes["event_features"] = config.model.event_features
        changes["event_hidden"] = config.model.event_hidden
    elif dims.event_classes and dims.event_features != config.model.event_features:
        logger.warning(
            f"the checkpoint's event head reads {dims.event_features!r}, not model.event_features "
            f"{config.model.event_features!r}: finetuning continues the checkpoint's head"
        )
    if dims.event_classes and set(classes) - set(dims.event_classes):
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
