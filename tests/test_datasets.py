"""Dataset loaders: corpus manifest, Clotho, AudioCaps, plain CSV/JSONL, on real audio files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_dac.data.catalog import recording_path
from edge_dac.data.datasets import load_item_audio, load_manifest
from edge_dac.errors import EdgeDacError


def write_tone(path: Path, seconds: float, rate: int = 16_000, channels: int = 1, freq: float = 440.0) -> Path:
    """A sine in the first channel, silence in the others; the level tells mono averaging happened."""
    t = np.arange(int(seconds * rate)) / rate
    samples = np.zeros((len(t), channels), dtype=np.float32)
    samples[:, 0] = 0.5 * np.sin(2 * np.pi * freq * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate)
    return path


def write_broken_wav(path: Path) -> Path:
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage, not a header")
    return path


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_corpus_manifest(tmp_path):
    write_tone(tmp_path / "scenes" / "s0.flac", 2.0)
    write_tone(tmp_path / "scenes" / "s1.flac", 1.0)
    events = [{"label": "dog barking", "onset": 0.1, "offset": 0.9, "gain": -6.0}]
    records = [
        {"audio": "scenes/s0.flac", "captions": ["a dog barks", "a dog barks twice"], "events": events,
         "split": "train", "seed": 1, "id": "s0"},
        {"audio": "scenes/s1.flac", "captions": ["silence"], "events": [], "split": "test", "seed": 2, "id": "s1"},
    ]  # fmt: skip
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    manifest = load_manifest(tmp_path)  # a directory holding manifest.jsonl is accepted too
    assert manifest.format == "corpus" and len(manifest) == 2 and manifest.skipped == 0
    first = manifest.items[0]
    assert first.audio == tmp_path / "scenes" / "s0.flac" and first.captions == records[0]["captions"]
    assert first.events == events and first.split == "train" and first.id == "s0"
    assert [item.id for item in manifest.split("test")] == ["s1"]
    assert len(load_item_audio(first)) == 32_000


def test_clotho_csv_with_sibling_audio_dir(tmp_path):
    write_tone(tmp_path / "development" / "Rain, on a roof.wav", 1.0, rate=44_100, channels=2)
    header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    row = '"Rain, on a roof.wav",rain falls,"rain, steady",heavy rain,rain on metal,water drips\n'
    (tmp_path / "clotho_captions_development.csv").write_text(header + row)
    manifest = load_manifest(tmp_path / "clotho_captions_development.csv")
    (item,) = manifest.items
    assert manifest.format == "clotho" and item.split == "train" and item.id == "Rain, on a roof"
    assert item.captions == ["rain falls", "rain, steady", "heavy rain", "rain on metal", "water drips"]
    samples = load_item_audio(item)
    assert samples.ndim == 1 and len(samples) == 16_000
    assert np.abs(samples).max() == pytest.approx(0.25, abs=0.01)  # stereo (tone + silence) averaged to mono


def test_audiocaps_groups_rows_and_honours_start_time(tmp_path):
    audio = tmp_path / "audio"
    write_tone(audio / "abcdefghijk.flac", 30.0, rate=44_100, channels=2)  # the whole video's audio
    write_tone(audio / "Yzyxwvutsrqp.wav", 10.0, rate=32_000)  # an already-cut clip, AudioSet naming
    write_tone(audio / "103.ogg", 10.0, rate=48_000)  # named after the audiocap_id
    (audio / "abcdefghijk.txt").write_text("not audio, same stem")
    (tmp_path / "val.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "101,abcdefghijk,12,a man speaks\n"
        "102,abcdefghijk,12,a man talks loudly\n"
        "201,zyxwvutsrqp,30,birds sing\n"
        "103,mmmmmmmmmmm,0,a car passes\n"
    )
    manifest = load_manifest(tmp_path / "val.csv", audio_root=audio)
    assert manifest.format == "audiocaps" and len(manifest) == 3
    talk, birds, car = manifest.items
    assert talk.captions == ["a man speaks", "a man talks loudly"] and talk.split == "val"
    assert (talk.offset_s, talk.duration_s) == (12.0, 10.0)
    assert talk.audio.name == "abcdefghijk.flac"
    assert birds.audio.name == "Yzyxwvutsrqp.wav" and car.audio.name == "103.ogg"
    assert len(load_item_audio(talk)) == 160_000  # 10 s cut out of 30 s
    assert len(load_item_audio(birds)) == 160_000  # pre-cut: read whole although start_time is 30 s


def test_plain_csv_and_jsonl_group_captions_per_file(tmp_path):
    write_tone(tmp_path / "a.wav", 0.5)
    write_tone(tmp_path / "b.wav", 0.5)
    (tmp_path / "caps.csv").write_text("audio,caption,split\na.wav,a beep,train\nb.wav,a hum,val\na.wav,a tone,train\n")
    manifest = load_manifest(tmp_path / "caps.csv")
    assert manifest.format == "plain"
    assert [(i.audio.name, i.captions, i.split) for i in manifest.items] == [
        ("a.wav", ["a beep", "a tone"], "train"),
        ("b.wav", ["a hum"], "val"),
    ]
    lines = [{"audio": "a.wav", "caption": "a beep"}, {"audio": "a.wav", "caption": "a tone"}]
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    (item,) = load_manifest(tmp_path / "caps.jsonl").items
    assert item.captions == ["a beep", "a tone"] and item.id == "a"


def test_real_soundscape_recordings_as_a_plain_dataset(tmp_path, soundscape_cache, catalog_rows):
    """Stereo 44.1/48 kHz Vorbis from real packages come out mono at 16 kHz."""
    rows = [r for r in catalog_rows if r.member is None and r.channels == 2 and r.sample_rate in (44_100, 48_000)]
    rows = rows[:3]
    assert len(rows) == 3
    lines = [{"audio": str(recording_path(r, soundscape_cache)), "caption": r.label} for r in rows]
    (tmp_path / "real.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    manifest = load_manifest(tmp_path / "real.jsonl")
    assert len(manifest) == 3
    for item, row in zip(manifest.items, rows, strict=True):
        samples = load_item_audio(item)
        assert samples.ndim == 1 and abs(len(samples) / 16_000 - row.duration_s) < 0.01


def test_missing_and_broken_audio_fail_in_one_line_or_are_skipped(tmp_path):
    write_tone(tmp_path / "good.wav", 0.5)
    write_broken_wav(tmp_path / "broken.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    csv_text = "audio,caption\ngood.wav,ok\nbroken.wav,bad\nmissing.wav,gone\nempty.wav,empty\n"
    (tmp_path / "caps.csv").write_text(csv_text)
    with pytest.raises(EdgeDacError) as error:
        load_manifest(tmp_path / "caps.csv")
    message = one_line(error)
    assert message.startswith(f"3 of 4 audio files in {tmp_path / 'caps.csv'} are missing or unreadable")
    assert "broken.wav" in message and "missing.wav" in message and message.endswith("pass --skip-bad")

    manifest = load_manifest(tmp_path / "caps.csv", skip_bad=True)
    assert manifest.skipped == 3 and [item.audio.name for item in manifest.items] == ["good.wav"]


def test_audio_root_override_and_all_missing_with_skip_bad(tmp_path):
    write_tone(tmp_path / "elsewhere" / "a.wav", 0.5)
    (tmp_path / "caps.csv").write_text("audio,caption\na.wav,a beep\n")
    assert len(load_manifest(tmp_path / "caps.csv", audio_root=tmp_path / "elsewhere")) == 1
    manifest = load_manifest(tmp_path / "caps.csv", skip_bad=True)
    assert manifest.skipped == 1 and manifest.items == []


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("wrong.csv", "path,text\na.wav,beep\n", "unrecognised columns (path, text)"),
        ("bad.jsonl", '{"audio": "a.wav", "caption": "x"}\n{not json\n', "bad.jsonl:2: not valid JSON"),
        ("keys.jsonl", '{"file": "a.wav"}\n', "keys.jsonl:1: has file"),
        ("empty.csv", "audio,caption\n", "holds no captioned audio"),
        ("caps.txt", "a.wav beep\n", "unknown dataset file type .txt"),
        ("nocap.csv", "audio,caption\na.wav,\n", "1 of 1 items have no caption"),
    ],
)
def test_malformed_datasets_are_one_line(tmp_path, name, text, expected):
    write_tone(tmp_path / "a.wav", 0.5)
    (tmp_path / name).write_text(text)
    with pytest.raises(EdgeDacError) as error:
        load_manifest(tmp_path / name)
    message = one_line(error)
    assert expected in message
    if "columns" in expected:
        assert "file_name, caption_1" in message and "audiocap_id, youtube_id, start_time, caption" in message


def test_missing_manifest_is_one_line(tmp_path):
    with pytest.raises(EdgeDacError) as error:
        load_manifest(tmp_path / "nope.jsonl")
    assert "not found" in one_line(error)
