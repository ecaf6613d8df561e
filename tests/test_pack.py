"""Source packs (``edge-dac data pack``): real recordings of the small package set re-encoded as
Ogg/Opus, read back through the catalog reader and mixed into scenes from the pack alone."""

from __future__ import annotations

import numpy as np
import pytest

from edge_dac.cli import main
from edge_dac.data.build import fetched_packages
from edge_dac.data.catalog import load_catalog, read_recording
from edge_dac.data.mixer import SceneConfig, SceneMixer
from edge_dac.data.pack import choose_rows, pack_sources
from edge_dac.errors import EdgeDacError


def test_choose_rows_thins_speech_per_speaker_and_keeps_only_the_asked_splits(catalog_rows):
    chosen = choose_rows(catalog_rows, ("train",), speech_per_speaker=2)
    assert {row.split for row in chosen} == {"train"}
    speech = [row for row in chosen if row.kind == "speech"]
    per_speaker: dict = {}
    for row in speech:
        per_speaker[(row.package, row.speaker)] = per_speaker.get((row.package, row.speaker), 0) + 1
    assert speech and max(per_speaker.values()) == 2
    others = [r for r in catalog_rows if r.split == "train" and r.kind != "speech"]
    assert sorted(r.md5 for r in chosen if r.kind != "speech") == sorted(r.md5 for r in others)
    assert choose_rows(catalog_rows, ("train",), 2) == chosen  # deterministic


@pytest.fixture(scope="module")
def small_pack(soundscape_cache, catalog_rows, tmp_path_factory):
    train = [r for r in catalog_rows if r.split == "train"]
    rows = [r for r in train if r.kind == "sfx"][:8] + [r for r in train if r.kind == "speech"][:4]
    out = tmp_path_factory.mktemp("pack")
    report = pack_sources(rows, soundscape_cache, out, max_seconds=3.0, progress=False)
    return rows, out, report


def test_a_pack_reads_back_like_the_cache_cropped(soundscape_cache, small_pack):
    rows, pack, report = small_pack
    assert report.recordings == len(rows) and report.skipped == 0
    assert sorted(r.md5 for r in load_catalog(pack / "catalog.csv")) == sorted(r.md5 for r in rows)
    assert fetched_packages(pack) == {row.package for row in rows}
    for row in rows[:4]:
        original = read_recording(row, soundscape_cache)[: 3 * 16000]
        packed = read_recording(row, pack)
        assert len(packed) == len(original)
        correlation = np.corrcoef(original, packed)[0, 1]
        assert correlation > 0.9, (row.path, correlation)  # lossy, but the same sound


def test_scenes_mix_from_the_pack_alone_and_packing_again_rewrites_nothing(soundscape_cache, small_pack, tmp_path):
    rows, pack, _ = small_pack
    mixer = SceneMixer(load_catalog(pack / "catalog.csv"), pack, SceneConfig(seconds=2.0, speech_prob=0.0), "train")
    scene = mixer.mix(3)
    assert scene.audio.shape == (32000,) and np.abs(scene.audio).max() > 0.01 and scene.events
    before = {p.name: p.stat().st_mtime_ns for p in (pack / "packed").iterdir()}
    pack_sources(rows, soundscape_cache, pack, max_seconds=3.0, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (pack / "packed").iterdir()} == before
    with pytest.raises(EdgeDacError, match="fetch cache itself"):
        pack_sources(rows, soundscape_cache, soundscape_cache, progress=False)


def test_pack_cli_rejects_an_unknown_split_in_one_line(tmp_path, capsys):
    assert main(["data", "pack", "--out", str(tmp_path / "p"), "--splits", "train,dev"]) == 2
    assert "unknown split 'dev'" in capsys.readouterr().err
