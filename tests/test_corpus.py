"""The soundscape corpus: mixing, captions, `edge-dac data build`, on the real small package set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_dac.cli import main
from edge_dac.data.build import CorpusConfig, build_corpus, clip_seed
from edge_dac.data.catalog import load_catalog
from edge_dac.data.fetch import SMALL_PACKAGES
from edge_dac.data.mixer import SceneConfig, SceneMixer
from edge_dac.errors import EdgeDacError
from edge_dac.lexicon import load_lexicon

MANIFEST_KEYS = ["id", "audio", "captions", "events", "split", "seed"]
EVENT_KEYS = {"label", "class", "onset", "offset", "gain_db", "md5", "role", "count"}


def small_config(**changes) -> CorpusConfig:
    scene = SceneConfig(seconds=4.0, cache_mb=256)
    config = CorpusConfig(
        seed=7, clips={"train": 12, "val": 12, "test": 12}, format="wav", packages=sorted(SMALL_PACKAGES), scene=scene
    )
    return config.model_copy(update=changes)


@pytest.fixture(scope="module")
def corpus(soundscape_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(small_config(), out, soundscape_cache, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def records(corpus) -> list[dict]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def test_same_config_and_seed_give_identical_bytes(corpus, soundscape_cache, tmp_path):
    # One worker instead of two: the clip seeds, not the scheduling, decide every byte.
    build_corpus(small_config(), tmp_path, soundscape_cache, workers=1, progress=False)
    first = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert first == second and len(first) == 36 + 5
    for relative in first:
        assert (corpus / relative).read_bytes() == (tmp_path / relative).read_bytes(), relative


def test_another_seed_gives_another_corpus(corpus, soundscape_cache, tmp_path):
    build_corpus(small_config(seed=8, clips={"test": 3}), tmp_path, soundscape_cache, workers=1, progress=False)
    assert (tmp_path / "audio/test/scape-test-000000.wav").read_bytes() != (
        corpus / "audio/test/scape-test-000000.wav"
    ).read_bytes()


def test_manifest_records(records, corpus):
    assert [r["split"] for r in records] == ["train"] * 12 + ["val"] * 12 + ["test"] * 12
    for record in records:
        assert list(record) == MANIFEST_KEYS
        assert (corpus / record["audio"]).is_file()
        assert len(record["captions"]) == 5 and len(set(record["captions"])) == 5
        assert record["events"] and all(set(e) == EVENT_KEYS for e in record["events"])
        index = int(record["id"].rsplit("-", 1)[1])
        assert record["seed"] == clip_seed(7, record["split"], index)


def test_splits_share_no_recording(records):
    catalog = {row.md5: row for row in load_catalog()}
    md5s = {split: set() for split in ("train", "val", "test")}
    for record in records:
        for event in record["events"]:
            assert catalog[event["md5"]].split == record["split"]
            md5s[record["split"]].add(event["md5"])
    assert not (md5s["train"] & md5s["val"]) and not (md5s["train"] & md5s["test"]) and not (md5s["val"] & md5s["test"])


def test_every_caption_names_exactly_the_placed_events(records):
    lexicon = load_lexicon()
    for record in records:
        placed = {event["class"] for event in record["events"]}
        for caption in record["captions"]:
            assert lexicon.labels_in_caption(caption) == placed, (caption, record["events"])
            assert caption == caption.lower() and not caption.endswith(".")
            assert 3 <= len(caption.split()) <= 24


def test_no_reference_caption_counts_as_broken(records):
    """The fluency check (edge-dac eval's `broken`) flags none of the captions the corpus writes
    (also none of 50,000 in a 10,000-clip test/val corpus, docs/dac-recipe.md)."""
    from edge_dac.model.decoding import is_broken

    captions = [caption for record in records for caption in record["captions"]]
    assert captions and [c for c in captions if is_broken(c)] == []


def test_audio_has_the_configured_rate_and_length_and_never_clips(records, corpus):
    for record in records:
        audio, rate = soundfile.read(corpus / record["audio"], dtype="float32")
        assert rate == 16000 and audio.ndim == 1 and audio.size == 4 * 16000
        assert 0.0 < np.abs(audio).max() <= 0.98 + 1e-4
        for event in record["events"]:
            assert 0.0 <= event["onset"] < event["offset"] <= 4.0 + 1e-3


def test_audiocaps_csvs(corpus, records):
    for split in ("train", "val", "test"):
        with open(corpus / f"{split}.csv", newline="") as file:
            rows = list(csv.DictReader(file))
        assert list(rows[0]) == ["audiocap_id", "youtube_id", "start_time", "caption"]
        expected = [(r["id"], c) for r in records if r["split"] == split for c in r["captions"]]
        assert [(row["youtube_id"], row["caption"]) for row in rows] == expected
        assert {row["start_time"] for row in rows} == {"0"}


def test_mixer_is_deterministic_and_places_what_it_says(soundscape_cache, catalog_rows):
    config = SceneConfig(seconds=10.0, background_prob=1.0, speech_prob=1.0, event_counts={2: 1.0}, cache_mb=256)
    mixer = SceneMixer(catalog_rows, soundscape_cache, config, "train")
    first, again, other = mixer.mix(11), mixer.mix(11), mixer.mix(12)
    assert np.array_equal(first.audio, again.audio) and first.captions == again.captions
    assert first.events == again.events and not np.array_equal(first.audio, other.audio)
    assert first.audio.dtype == np.float32 and first.audio.size == 160_000
    roles = sorted(e["role"] for e in first.events)
    assert roles == ["background", "foreground", "foreground", "speech"]
    # The foreground events are where the manifest says: louder there than in a silent stretch.
    quiet = SceneConfig(seconds=10.0, background_prob=0.0, speech_prob=0.0, event_counts={1: 1.0}, cache_mb=256)
    scene = SceneMixer(catalog_rows, soundscape_cache, quiet, "train").mix(5)
    (event,) = scene.events
    onset, offset = int(event["onset"] * 16000), int(event["offset"] * 16000)  # rounded to 1 ms
    assert np.abs(scene.audio[onset + 16 : offset - 16]).max() > 0
    assert np.abs(np.delete(scene.audio, np.s_[onset - 16 : offset + 16])).max() == 0


def test_caption_families_of_a_seed_are_those_its_scene_is_written_in(soundscape_cache, catalog_rows):
    # Distillation caches scenes by seed and reads their captions' wording codes back from it.
    config = SceneConfig(seconds=4.0, event_counts={1: 0.5, 2: 0.5}, cache_mb=256)
    mixer = SceneMixer(catalog_rows, soundscape_cache, config, "train")
    scenes = [mixer.mix(seed) for seed in range(6)]
    assert all(SceneMixer.caption_families(s.seed) == s.families for s in scenes)
    assert len({tuple(s.families) for s in scenes}) > 1  # the order is drawn, so the check means something


def test_repeats_and_distance_show_in_the_captions(soundscape_cache, catalog_rows):
    config = SceneConfig(repeat_prob=1.0, distant_prob=1.0, background_prob=0.0, speech_prob=0.0,
                         event_counts={1: 1.0}, cache_mb=256)
    mixer = SceneMixer(catalog_rows, soundscape_cache, config, "train")
    counted = distant = 0
    for seed in range(40):
        scene = mixer.mix(seed)
        (event,) = scene.events
        text = " ".join(scene.captions)
        if event["count"] == 2:
            counted += "twice" in text
        elif event["count"] > 2:
            counted += any(w in text for w in ("repeatedly", "several times", "over and over"))
        distant += any(w in text for w in ("distance", "distant", "far away", "faintly"))
    assert counted >= 10 and distant >= 30


def test_mixer_rejects_a_split_without_recordings(soundscape_cache, catalog_rows):
    speech_only = [row for row in catalog_rows if row.kind == "speech"]
    with pytest.raises(EdgeDacError, match="no usable foreground recordings in the test split"):
        SceneMixer(speech_only, soundscape_cache, SceneConfig(), "test")


def test_cli_build_and_bad_config(soundscape_cache, tmp_path, capsys):
    config = tmp_path / "corpus.yaml"
    config.write_text("seed: 3\nformat: flac\nscene: {seconds: 3.0}\n")
    out = tmp_path / "out"
    packages = ",".join(sorted(SMALL_PACKAGES))
    argv = ["data", "build", "--config", str(config), "--out", str(out), "--clips", "5", "--workers", "1"]
    assert main(argv + ["--packages", packages, "--cache", str(soundscape_cache)]) == 0
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["seed"] == clip_seed(3, "train", 0)
    assert soundfile.info(out / json.loads(lines[0])["audio"]).format == "FLAC"

    # The bundled demo's layout: one split, audio next to the manifest.
    flat = tmp_path / "flat"
    extra = ["--splits", "test", "--flat", "--clips", "2", "--out", str(flat), "--packages", packages]
    assert main(argv[:-6] + extra + ["--workers", "1", "--cache", str(soundscape_cache)]) == 0
    records = [json.loads(line) for line in (flat / "manifest.jsonl").read_text().splitlines()]
    assert [r["audio"] for r in records] == ["scape-test-000000.flac", "scape-test-000001.flac"]
    assert all((flat / r["audio"]).is_file() for r in records) and not (flat / "audio").exists()

    capsys.readouterr()
    assert main(argv + ["--packages", packages, "--cache", str(tmp_path / "empty-cache")]) == 2
    assert "not fetched into" in capsys.readouterr().err

    config.write_text("scene: {secondz: 3}\n")
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "unknown key 'scene.secondz'" in error[0]


DEMO = Path(__file__).resolve().parents[1] / "edge_dac" / "assets" / "demo"


def test_bundled_demo_is_small_consistent_and_regenerates(soundscape_cache, tmp_path):
    records = [json.loads(line) for line in (DEMO / "manifest.jsonl").read_text().splitlines()]
    assert 4 <= len(records) <= 6 and {r["split"] for r in records} == {"test"}
    assert sum(p.stat().st_size for p in DEMO.iterdir()) < 1_500_000
    lexicon = load_lexicon()
    for record in records:
        info = soundfile.info(DEMO / record["audio"])
        assert (info.format, info.samplerate, info.channels, info.frames) == ("FLAC", 16000, 1, 160_000)
        assert all(lexicon.labels_in_caption(c) == {e["class"] for e in record["events"]} for c in record["captions"])
    # The command in docs/data-card.md rebuilds it: same manifest, same samples.
    packages = ",".join(sorted(SMALL_PACKAGES))
    argv = ["data", "build", "--splits", "test", "--clips", str(len(records)), "--seed", "3", "--packages", packages,
            "--flat", "--workers", "1", "--out", str(tmp_path), "--cache", str(soundscape_cache)]
    assert main(argv) == 0
    assert (tmp_path / "manifest.jsonl").read_text() == (DEMO / "manifest.jsonl").read_text(), (
        "the demo is stale: rebuild it with the command in docs/data-card.md"
    )
    for record in records:
        fresh, _ = soundfile.read(tmp_path / record["audio"], dtype="int16")
        shipped, _ = soundfile.read(DEMO / record["audio"], dtype="int16")
        assert np.array_equal(fresh, shipped)


def test_reference_captions_are_seldom_redundant(records):
    """``is_redundant`` (one sound named twice) is a ranking preference, not a verdict: the corpus
    names one kind of sound twice where a scene holds two of them, which must stay rare (0.5 % of
    the 5,000 test captions of docs/dac-recipe.md)."""
    from edge_dac.model.decoding import is_redundant

    captions = [caption for record in records for caption in record["captions"]]
    assert sum(map(is_redundant, captions)) <= 0.05 * len(captions)

