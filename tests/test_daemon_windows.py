"""Windows, the sample clock and the file/demo sources, on real audio files."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile

from edge_dac.audio import load_audio
from edge_dac.daemon.config import SourceConfig
from edge_dac.daemon.sources import FileSource, open_source
from edge_dac.daemon.windows import AudioBlock, SampleClock, Windower, level_dbfs
from edge_dac.errors import AudioError

RATE = 16000


def noise(seconds: float, level: float = 0.1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * level).astype(np.float32)


def write_flac(path, samples, rate=RATE):
    soundfile.write(str(path), samples, rate, format="FLAC", subtype="PCM_16")
    return path


def feed(windower: Windower, samples: np.ndarray, block: int, start: int = 0):
    windows = []
    for offset in range(0, len(samples), block):
        windows += windower.push(AudioBlock(samples[offset : offset + block], start + offset))
    return windows


def test_windows_are_sample_aligned_and_exact():
    audio = noise(7.3)
    windows = feed(Windower(2.0, 0.5, RATE, silence_dbfs=None), audio, block=1234)
    assert [w.start_sample for w in windows] == list(range(0, len(audio) - 32000 + 1, 8000))
    for w in windows:
        assert w.end_sample - w.start_sample == 32000
        np.testing.assert_array_equal(w.samples, audio[w.start_sample : w.end_sample])


def test_gap_in_stream_restarts_at_next_hop_boundary():
    windower = Windower(1.0, 0.5, RATE, silence_dbfs=None)
    before = feed(windower, noise(2.0), block=1600)
    after = feed(windower, noise(2.0, seed=1), block=1600, start=5 * RATE + 100)  # 3 s lost, then resumed
    assert windower.gaps == 1
    assert before[-1].end_sample == 2 * RATE
    assert after[0].start_sample == 5 * RATE + 8000  # next multiple of the hop, never stitched across the gap
    assert all(w.start_sample % 8000 == 0 for w in before + after)


def test_reconfigure_keeps_the_stream_and_the_window_in_progress():
    """A reload changes length, hop and gate of the stream in progress: the buffered audio is kept
    (the first window after it starts where the next window was due, before the reload), windows go
    on at multiples of the new hop on the same sample clock, and nothing restarts at sample 0."""
    audio = noise(8.0)
    windower = Windower(2.0, 1.0, RATE, silence_dbfs=None)
    before = feed(windower, audio[: int(3.5 * RATE)], block=1000)
    assert [w.start_sample for w in before] == [0, RATE]  # the window from 2 s is in progress (1.5 s of 2 s)
    windower.reconfigure(1.0, 0.25, -200.0)
    after = feed(windower, audio[int(3.5 * RATE) :], block=1000, start=int(3.5 * RATE))
    assert after[0].start_sample == 2 * RATE  # the window that was in progress, from audio buffered before
    assert [w.start_sample for w in after] == list(range(2 * RATE, 7 * RATE + 1, RATE // 4))
    for w in after:
        assert w.end_sample - w.start_sample == RATE
        np.testing.assert_array_equal(w.samples, audio[w.start_sample : w.end_sample])
    assert windower.gaps == 0
    with pytest.raises(ValueError, match="at least one sample"):
        windower.reconfigure(1.0, 0.0, None)


def test_silence_gate():
    windower = Windower(1.0, 1.0, RATE, silence_dbfs=-50.0)
    quiet = np.full(RATE, 1e-4, dtype=np.float32)  # -80 dBFS
    windows = feed(windower, np.concatenate([quiet, noise(1.0)]), block=RATE)
    assert [w.silent for w in windows] == [True, False]
    assert level_dbfs(np.zeros(10, dtype=np.float32)) == float("-inf")


def test_no_drift_over_ten_minutes_at_fast_pacing(tmp_path):
    """Timestamps come from sample indexes only: after 10 minutes read at full speed, every
    window holds exactly the file's samples at its indexes and its time is anchor + index / rate."""
    path = write_flac(tmp_path / "ten_minutes.flac", noise(600.0, level=0.05))
    audio = load_audio(path)
    source = FileSource([path], fast=True, block_s=0.1)
    windower = Windower(10.0, 2.0, RATE)
    source.start()
    clock = SampleClock(RATE, source.anchor_time)
    started = time.monotonic()
    windows = []
    while (block := source.read(1.0)) is not None:
        windows += windower.push(block)
    assert time.monotonic() - started < 60  # really read fast, not at real time
    assert source.state == "finished"
    assert len(windows) == (len(audio) - 160000) // 32000 + 1 == 296
    for w in windows:
        assert np.array_equal(w.samples, audio[w.start_sample : w.end_sample])
    last = windows[-1]
    assert last.end_sample == 600 * RATE
    assert clock.time_of(last.end_sample) == source.anchor_time + 600.0
    assert clock.iso(0) < clock.iso(last.end_sample)


def test_real_time_pacing_and_loop(tmp_path):
    path = write_flac(tmp_path / "half_second.flac", noise(0.5))
    audio = load_audio(path)
    source = FileSource([path], loop=True, block_s=0.1)
    source.start()
    started = time.monotonic()
    blocks = []
    while sum(len(b.samples) for b in blocks) < 2 * len(audio):
        if (block := source.read(0.5)) is not None:
            blocks.append(block)
    assert time.monotonic() - started >= 0.9  # one second of audio takes one second
    stream = np.concatenate([b.samples for b in blocks])
    assert [b.start_sample for b in blocks] == list(np.cumsum([0] + [len(b.samples) for b in blocks[:-1]]))
    np.testing.assert_array_equal(stream[: 2 * len(audio)], np.concatenate([audio, audio]))


def test_demo_source_reads_a_folder_of_clips(tmp_path):
    write_flac(tmp_path / "b.flac", noise(0.2, seed=2))
    write_flac(tmp_path / "a.flac", noise(0.3, seed=1), rate=44100)  # resampled on load
    source = open_source(SourceConfig(kind="demo", path=str(tmp_path), fast=True))
    assert source.kind == "demo" and source.realtime is False
    source.start()
    first = source.read(0.1)
    assert first.start_sample == 0 and source.state == "healthy"
    with pytest.raises(AudioError, match="no demo clips"):
        open_source(SourceConfig(kind="demo", path=str(tmp_path / "empty")))


def test_bad_file_source_is_one_line(tmp_path):
    bad = tmp_path / "notes.flac"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="not a readable audio file"):
        open_source(SourceConfig(kind="file", path=str(bad)))


def test_window_length_defaults_to_the_models_and_a_longer_one_is_refused():
    """A window longer than the model's would be cropped by the engine: captions of stale audio."""
    from edge_dac.daemon.config import WindowConfig
    from edge_dac.daemon.run import window_seconds
    from edge_dac.engines import EagerEngine
    from edge_dac.errors import ConfigError
    from tests.factories import tiny_captioner

    engine = EagerEngine(tiny_captioner(seconds=2.0), "tiny-random")
    assert window_seconds(WindowConfig(), engine) == 2.0
    assert window_seconds(WindowConfig(length_s=1.5), engine) == 1.5
    with pytest.raises(ConfigError, match=r"windows.length_s 3 is longer than the model's 2 s window"):
        window_seconds(WindowConfig(length_s=3.0), engine)


def test_daemon_warns_when_its_hop_leaves_audio_uncaptioned(tmp_path):
    """``edge-dac run`` (the real command, a non-looping file read --fast) with windows.hop_s 3 and
    windows of 1 s: 2 s of every 3 are never heard. It runs (a duty cycle is a choice), and says so."""
    import os
    import subprocess
    import sys

    import yaml

    from edge_dac.model import save_captioner
    from tests.factories import tiny_captioner

    model = save_captioner(tiny_captioner("dac", seconds=1.0), tmp_path / "tiny")
    audio = write_flac(tmp_path / "four.flac", noise(4.0))
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        "windows": {"length_s": 1.0, "hop_s": 3.0},
        "engine": {"backend": "eager", "steps": 2, "candidates": 2, "threads": 1},
        "publisher": {"endpoint": f"ipc://{tmp_path}/captions.sock"},
    }))
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "run", "--config", str(config), "--source", f"file:{audio}", "--fast",
         "--model", str(model)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "windows.hop_s 3 s is longer than the 1 s window: 2 s of every 3 s are never captioned" in result.stderr
