"""``edge-dac train`` on real mixed scenes of the small package set, with tiny models (seconds each).

Covered: both decoder kinds learn (validation loss falls), exact resume, DDP with two CPU processes
(gloo) equals one process with the same global batch, the tagger stage and encoder_init, finetuning
with the [UNK] refusal and vocabulary growth, one-line errors for a bad config key and an unreadable
manifest.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from edge_dac.cli import main
from edge_dac.errors import EdgeDacError
from edge_dac.model import load_captioner
from edge_dac.training.config import load_train_config
from edge_dac.training.tagger import load_encoder_weights
from edge_dac.training.train import STATE_FILE, train

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "edge_dac" / "assets" / "demo"
PACKAGES = ["lincity-ng-data", "scorched3d-data", "openttd-opensfx"]  # a few hundred rows: quick to decode


def tiny_config(kind: str = "dac", **sections) -> dict:
    config = {
        "kind": kind,
        "seed": 0,
        "threads": 1,
        "model": {
            "max_audio_seconds": 2.0,
            "encoder_width": 32,
            "encoder_layers": 1,
            "encoder_heads": 2,
            "encoder_stride": 8,
            "decoder_width": 32,
            "decoder_layers": 1,
            "decoder_heads": 2,
            "max_caption_tokens": 16,
            "embedding_dim": 16,
            "dropout": 0.1,
        },
        "tokenizer": {"vocab_size": 300, "scenes": 60},
        "data": {"packages": PACKAGES, "scene": {"seconds": 2.0, "cache_mb": 64}},
        "optim": {"steps": 20, "batch_size": 8, "learning_rate": 0.003, "warmup_steps": 2},
        "validation": {"every": 10, "scenes": 8, "train_probe_scenes": 4, "decoding_steps": 2},
        "checkpoint": {"every": 10},
        "log": {"every": 1, "tensorboard": False},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def curve(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in records]


@pytest.fixture(scope="module")
def dac_run(soundscape_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dac-run")
    config = load_train_config(write_config(out.parent / "dac.yaml", tiny_config("dac")))
    train(config, out, progress=False)
    return out


@pytest.mark.parametrize("kind", ["dac", "ar"])
def test_tiny_run_learns_and_writes_checkpoints(kind, dac_run, tmp_path):
    if kind == "dac":
        out = dac_run
    else:
        out = tmp_path / "run"
        config_path = write_config(tmp_path / "ar.yaml", tiny_config("ar", log={"tensorboard": True}))
        assert main(["train", "--config", str(config_path), "--out", str(out), "--no-progress"]) == 0
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    validations = [r for r in curve(out) if "val/loss" in r]
    assert [r["step"] for r in validations] == [0, 10, 20]
    assert validations[-1]["val/loss"] < validations[0]["val/loss"] - 0.3
    assert 0.0 <= validations[-1]["val/event_f1"] <= 1.0
    assert [p.name for p in sorted((out / "checkpoints").glob("step-*"))] == ["step-0000010", "step-0000020"]
    model = load_captioner(out / "best")
    assert model.dims.kind == kind and model.dims.encoder_width == 32
    assert (out / "checkpoints" / "step-0000020" / STATE_FILE).is_file()


def test_resume_repeats_the_uninterrupted_run_exactly(soundscape_cache, dac_run, tmp_path):
    # The shipped recipe's parts (2-D CNN stem, tagging head with its own state) resume exactly too.
    sections = {"optim": {"steps": 6}, "validation": {"every": 3}, "checkpoint": {"every": 100},
                "model": {"encoder_stem": "cnn2d", "encoder_channels": 4}, "loss": {"tag_weight": 1.0}}
    config = load_train_config(write_config(tmp_path / "c.yaml", tiny_config(**sections)))
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for out in (whole, parts):  # the same tokenizer (its trainer is not deterministic across runs)
        out.mkdir()
        shutil.copy(dac_run / "tokenizer.json", out / "tokenizer.json")
    train(config, whole, progress=False)
    train(config, parts, stop_after=4, progress=False)
    assert (parts / "checkpoints" / "step-0000004").is_dir()
    with pytest.raises(EdgeDacError, match="--resume"):
        train(config, parts, progress=False)
    train(config, parts, resume=True, progress=False)
    assert curve(parts) == curve(whole)
    a = torch.load(whole / "checkpoints" / "step-0000006" / STATE_FILE, weights_only=False)
    b = torch.load(parts / "checkpoints" / "step-0000006" / STATE_FILE, weights_only=False)
    for name in ("model", "ema"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name
    assert "tag_bce" in curve(whole)[1]


def test_max_minutes_stops_early_with_a_checkpoint_and_the_schedule_at_its_floor(soundscape_cache, dac_run, tmp_path):
    config = load_train_config(
        write_config(
            tmp_path / "c.yaml",
            tiny_config(optim={"steps": 100_000, "min_learning_rate": 1e-5}, validation={"every": 100_000},
                        checkpoint={"every": 100_000}),
        )
    )
    shutil.copy(dac_run / "tokenizer.json", tmp_path / "tokenizer.json")
    result = train(config, tmp_path, progress=False, max_minutes=0.25)
    assert 0 < result.step < 100_000
    assert (tmp_path / "checkpoints" / f"step-{result.step:07d}" / STATE_FILE).is_file()
    assert load_captioner(tmp_path / "best").dims.kind == "dac"  # validated at the stop
    steps = [r for r in curve(tmp_path) if "lr" in r]
    assert steps[-1]["step"] == result.step and steps[-1]["lr"] < 0.1 * config.optim.learning_rate


@pytest.mark.slow  # two torchrun processes importing torch: ~20 s alone, ~45 s on a busy 2-core machine
def test_two_ddp_processes_match_one_process(soundscape_cache, dac_run, tmp_path):
    config = tiny_config(optim={"steps": 3, "batch_size": 8, "micro_batch_size": 4}, validation={"every": 100})
    path = write_config(tmp_path / "ddp.yaml", config)
    single, pair = tmp_path / "single", tmp_path / "pair"
    for out in (single, pair):
        out.mkdir()
        shutil.copy(dac_run / "tokenizer.json", out / "tokenizer.json")
    train(load_train_config(path), single, progress=False)  # one process: 2 accumulated micro-batches of 4
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "edge_dac",
        "train",
        "--config",
        str(path),
        "--out",
        str(pair),
        "--no-progress",
        "--resume",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x2;" in result.stderr  # really two processes, each with one micro-batch of 4
    one = torch.load(single / "checkpoints" / "step-0000003" / STATE_FILE, weights_only=False)["model"]
    two = torch.load(pair / "checkpoints" / "step-0000003" / STATE_FILE, weights_only=False)["model"]
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    losses = [[r["total"] for r in curve(out) if "total" in r] for out in (single, pair)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_tagger_stage_pretrains_the_encoder_for_captioning(soundscape_cache, tmp_path):
    tagger_config = tiny_config(stage="tagger", optim={"steps": 6}, validation={"every": 3}, checkpoint={"every": 3})
    tagger_out = tmp_path / "tagger"
    train(load_train_config(write_config(tmp_path / "t.yaml", tagger_config)), tagger_out, progress=False)
    records = [r for r in curve(tagger_out) if "val/loss" in r]
    assert records[-1]["val/loss"] < records[0]["val/loss"]
    tagger_state = json.loads((tagger_out / "best" / "config.json").read_text())
    assert tagger_state["format"] == "edge-dac-tagger" and len(tagger_state["classes"]) > 10

    caption_config = tiny_config(model={"encoder_init": str(tagger_out / "best")}, optim={"steps": 1})
    caption_out = tmp_path / "caption"
    train(load_train_config(write_config(tmp_path / "c.yaml", caption_config)), caption_out, progress=False)
    # The starting encoder is the tagger's: reload both and compare one tensor before training moved it.
    from safetensors.torch import load_file

    start = load_captioner(caption_out / "checkpoints" / "step-0000001")
    tagger_weights = load_file(str(tagger_out / "best" / "model.safetensors"))
    assert load_encoder_weights(start.encoder, tagger_out / "best") == len(start.encoder.state_dict())
    assert torch.equal(start.encoder.state_dict()["stem.0.weight"], tagger_weights["encoder.stem.0.weight"])


def _manifest(path: Path, captions: list[str]) -> Path:
    clips = sorted(DEMO.glob("*.flac"))
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["audio", "caption"])
        for clip, caption in zip(clips, captions, strict=False):
            writer.writerow([str(clip), caption])
    return path


def test_finetune_refuses_unknown_words_then_grows_the_vocabulary(soundscape_cache, dac_run, tmp_path):
    config_path = write_config(
        tmp_path / "ft.yaml", tiny_config(optim={"steps": 2}, validation={"every": 100, "scenes": 2})
    )
    manifest = _manifest(tmp_path / "mine.csv", ["a dog barks über the road", "a bell rings twice", "rain falls"])
    before = len(load_captioner(dac_run / "best").tokenizer)
    args = [
        "train",
        "--config",
        str(config_path),
        "--init",
        str(dac_run / "best"),
        "--data",
        str(manifest),
        "--no-progress",
    ]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    with pytest.raises(EdgeDacError, match=r"unknown to the model's tokenizer.*'über'.*--grow-vocab"):
        config = load_train_config(config_path)
        config.data = config.data.model_copy(update={"manifest": str(manifest)})
        train(config, tmp_path / "refused2", init=dac_run / "best", progress=False)
    assert main([*args, "--out", str(tmp_path / "grown"), "--grow-vocab"]) == 0
    grown = load_captioner(tmp_path / "grown" / "checkpoints" / "step-0000002")
    assert len(grown.tokenizer) == before + 1 and "über" in grown.tokenizer.get_vocab()


def test_bad_config_key_is_one_line(tmp_path, capsys):
    path = write_config(tmp_path / "bad.yaml", tiny_config(optim={"stepz": 3}))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "bad.yaml" in error[0] and "optim.stepz" in error[0] and "Traceback" not in error[0]


def test_scenes_longer_than_the_model_window_are_refused(tmp_path, capsys):
    path = write_config(tmp_path / "long.yaml", tiny_config(data={"scene": {"seconds": 4.0}}))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "long.yaml" in error and "max_audio_seconds" in error


def test_unreadable_manifest_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    manifest = tmp_path / "mine.csv"
    manifest.write_text(f"audio,caption\n{broken},a dog barks\n")
    assert main(["train", "--data", str(manifest), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "unreadable" in error[0] and "broken.wav" in error[0]


def test_caption_families_restrict_the_training_targets(soundscape_cache, catalog_rows):
    from edge_dac.data.captions import FAMILIES
    from edge_dac.data.mixer import SceneConfig, SceneMixer
    from edge_dac.training.data import MixedScenes

    mixer = SceneMixer(catalog_rows, soundscape_cache, SceneConfig(seconds=2.0, cache_mb=64), "train")
    scene = mixer.mix(3)
    assert sorted(scene.families) == sorted(FAMILIES)  # one caption per family, aligned with the captions
    only_listing = MixedScenes(mixer, seed=0, samples=32_000, families=["listing"])
    batch = only_listing.batch(step=0, shard=0, size=4)
    for index, caption in enumerate(batch.captions):
        picked = mixer.mix(only_listing.scene_seed(0, 0, index))
        assert caption == picked.captions[picked.families.index("listing")]


def test_sed_targets_line_up_with_the_mixers_event_times(soundscape_cache, catalog_rows):
    """Frame targets of a real mixed scene, through the training batch: each event's class is on
    exactly at the encoder frames whose centres lie within its onset and offset."""
    from edge_dac.data.mixer import SceneConfig, SceneMixer
    from edge_dac.training.data import MixedScenes, frame_targets

    mixer = SceneMixer(catalog_rows, soundscape_cache, SceneConfig(seconds=4.0), "train")
    source = MixedScenes(mixer, seed=3, samples=64_000)
    batch = source.batch(step=0, shard=0, size=4)
    frame_seconds, frames = 0.04, 100  # stride 4 x hop 160 at 16 kHz, 4 s
    for clip, index in zip(batch.events, range(4), strict=True):
        scene = mixer.mix(source.scene_seed(0, 0, index))
        assert clip == [(e["class"], e["onset"], e["offset"]) for e in scene.events]  # the mixer's own times
        classes = sorted({name for name, _, _ in clip})
        targets = frame_targets([clip], classes, frames, frame_seconds)[0]
        for name, onset, offset in clip:
            on = targets[:, classes.index(name)].bool()
            centres = (torch.arange(frames) + 0.5) * frame_seconds
            inside = (centres >= onset) & (centres < offset)
            assert torch.equal(on & inside, inside)  # on wherever this event sounds
            if sum(1 for other, _, _ in clip if other == name) == 1:
                assert torch.equal(on, inside)  # and nowhere else when the class is placed once
            first = int(on.nonzero()[0])
            assert abs((first + 0.5) * frame_seconds - onset) <= frame_seconds  # within one frame


def test_finetuning_keeps_the_event_head_and_adds_it_when_missing(soundscape_cache, dac_run, tmp_path):
    """A checkpoint without an event head gets one (and wording codes) for finetuning; one with a
    head continues it: the finetuned head starts from the checkpoint's weights, not afresh."""
    sections = {"optim": {"steps": 2, "learning_rate": 1e-9, "warmup_steps": 0},
                "validation": {"every": 100, "scenes": 2}, "loss": {"sed_weight": 1.0, "tag_weight": 0.5},
                "model": {"wording_codes": 3}}
    config = load_train_config(write_config(tmp_path / "ft.yaml", tiny_config(**sections)))
    assert not load_captioner(dac_run / "best").dims.event_classes
    train(config, tmp_path / "first", init=dac_run / "best", progress=False)
    first = load_captioner(tmp_path / "first" / "checkpoints" / "step-0000002")
    assert first.dims.event_classes and first.dims.wording_codes == 3
    assert first.events is not None and first.decoder.wording is not None
    train(config, tmp_path / "second", init=tmp_path / "first" / "checkpoints" / "step-0000002", progress=False)
    second = load_captioner(tmp_path / "second" / "checkpoints" / "step-0000002")
    assert second.dims == first.dims
    # Continued: two steps at lr 1e-9 move it by ~1e-5 (the EMA), a fresh head would be ~0.1 away.
    fresh = type(first.events)(first.dims).state_dict()
    for name, tensor in first.events.state_dict().items():
        torch.testing.assert_close(second.events.state_dict()[name], tensor, atol=1e-3, rtol=0)
        if name.endswith("weight"):
            assert (fresh[name] - tensor).abs().max() > 0.01
    curve_names = set().union(*(r.keys() for r in curve(tmp_path / "second")))
    assert {"sed_bce", "tag_bce"} <= curve_names


def test_a_yamnet_event_head_is_trained_from_the_waveform_and_kept(soundscape_cache, dac_run, tmp_path):
    """``model.event_features: yamnet``: the added head reads YAMNet's 1 s patches of the real mixed
    scenes (2 per 2 s scene), its SED and tagging losses train it, and the next finetune continues it.
    YAMNet's own weights are fixed and stay out of the checkpoint."""
    sections = {"optim": {"steps": 3, "learning_rate": 1e-2, "warmup_steps": 0},
                "validation": {"every": 100, "scenes": 2}, "loss": {"sed_weight": 1.0, "tag_weight": 0.5},
                "model": {"event_features": "yamnet", "event_hidden": 16}}
    config = load_train_config(write_config(tmp_path / "ft.yaml", tiny_config(**sections)))
    train(config, tmp_path / "first", init=dac_run / "best", progress=False)
    first = load_captioner(tmp_path / "first" / "checkpoints" / "step-0000003")
    assert first.dims.event_features == "yamnet" and first.hearing is not None
    assert first.events.hidden[0].in_features == 1024 and first.events.frame.in_features == 16  # the hidden layer
    assert not any(name.startswith("hearing.") for name in first.state_dict())
    fresh = type(first.events)(first.dims, width=1024).state_dict()["frame.bias"]
    assert (first.events.frame.bias - fresh).abs().max() > 1e-3  # trained: lr 1e-2 moved it off its prior
    records = curve(tmp_path / "first")
    assert all(r["sed_bce"] > 0 and r["tag_bce"] > 0 for r in records if "sed_bce" in r)
    assert any("sed_bce" in r for r in records)
    audio = torch.randn(1, first.dims.max_audio_samples) * 0.1
    frames, clip = first.detect_events(first.encode_audio(audio), audio)
    assert frames.shape[1] == 2 and clip.shape == (1, len(first.dims.event_classes))
    # Continued, not started afresh: at lr 1e-9 the next finetune ends where the first one did (within
    # the EMA's drift), where a new draw of the hidden layer differs by ~0.02 a weight.
    sections["optim"]["learning_rate"] = 1e-9
    again = load_train_config(write_config(tmp_path / "again.yaml", tiny_config(**sections)))
    train(again, tmp_path / "second", init=tmp_path / "first" / "checkpoints" / "step-0000003", progress=False)
    second = load_captioner(tmp_path / "second" / "checkpoints" / "step-0000003")
    assert second.dims == first.dims
    for name, tensor in first.events.state_dict().items():
        torch.testing.assert_close(second.events.state_dict()[name], tensor, atol=1e-3, rtol=0)
    fresh_hidden = type(first.events)(first.dims, width=1024).hidden[0].weight
    assert (fresh_hidden - first.events.hidden[0].weight).abs().mean() > 0.01
