"""``edge-dac caption``: output contract and bad input (one line each, the other files still captioned)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from edge_dac.model import save_captioner
from tests.factories import tiny_captioner

RATE = 16_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_captioner(tiny_captioner("dac", seconds=2.0), tmp_path_factory.mktemp("model") / "dac")


def run_caption(model_dir, *args, backend="eager", engines_dir=None):
    env = {**os.environ, "EDGE_DAC_ENGINES": str(engines_dir or model_dir.parent / "engines")}
    return subprocess.run(
        [sys.executable, "-m", "edge_dac", "caption", "--model", str(model_dir), "--steps", "2",
         "--backend", backend, *map(str, args)],
        capture_output=True, text=True, timeout=300, env=env,
    )


def test_json_lines_follow_the_contract_and_windows_cover_long_files(model_dir, tmp_path):
    stereo_44k = tmp_path / "long.flac"
    seconds = 5.0
    t = np.arange(int(seconds * 44_100)) / 44_100
    soundfile.write(stereo_44k, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.3, 44_100)
    # The default backend: the fastest this machine has (builds its engine on first use).
    result = run_caption(model_dir, "--json", "--candidates", "3", "--hop", "1.5", stereo_44k, backend="auto")
    assert result.returncode == 0, result.stderr
    assert "engine" in result.stderr  # the choice of backend is logged
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["start"], line["end"]) for line in lines] == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
    for line in lines:
        assert set(line) >= {"file", "start", "end", "caption", "candidates"}
        assert line["file"] == str(stereo_44k)
        assert len(line["candidates"]) == 3
        assert line["caption"] == line["candidates"][0]["caption"]
        assert all(isinstance(c["caption"], str) and isinstance(c["score"], float) for c in line["candidates"])


def scene_at(tmp_path, rate: int, channels: int, seconds: float) -> tuple:
    """A real demo scene (tiled to ``seconds``) written at ``rate`` Hz with ``channels`` channels."""
    import soxr

    from edge_dac.const import DEMO_DIR

    clip, clip_rate = soundfile.read(sorted(DEMO_DIR.glob("*.flac"))[1], dtype="float32")
    clip = soxr.resample(clip, clip_rate, rate).astype(np.float32) if rate != clip_rate else clip
    mono = np.resize(clip, int(seconds * rate))
    path = tmp_path / f"scene-{rate}-{channels}.flac"
    soundfile.write(path, np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1), rate)
    return path


@pytest.mark.parametrize("rate,channels", [(44_100, 2), (16_000, 1)])
def test_the_streaming_reader_gives_the_windows_of_the_whole_file_reader(tmp_path, rate, channels):
    """``edge-dac caption`` decodes block by block: the same spans and the very same samples as
    decoding the whole file and cutting it with plan_windows, for a hop shorter than, equal to and
    longer than the window, for blocks that do not line up with windows, and for a short file."""
    from edge_dac.audio import load_audio, stream_audio
    from edge_dac.windows import cut, plan_windows, stream_windows

    path = scene_at(tmp_path, rate, channels, 23.7)
    whole = load_audio(path, RATE)
    assert np.array_equal(np.concatenate(list(stream_audio(path, RATE, block_s=1.3))), whole)
    for window_s, hop_s in [(10, 10), (10, 2), (10, 12.5), (2, 0.7), (30, 5)]:
        window, hop = int(window_s * RATE), int(hop_s * RATE)
        spans = plan_windows(whole.size, window, hop)
        streamed = list(stream_windows(stream_audio(path, RATE, block_s=1.3), window, hop))
        assert [span for span, _ in streamed] == spans, (window_s, hop_s)
        expected = cut(whole, spans, window)
        for row, (span, samples) in enumerate(streamed):
            assert np.array_equal(samples, expected[row, : span.end - span.start])


def test_streaming_memory_stays_at_one_block_however_long_the_file(tmp_path):
    """Ten minutes of audio: the whole-file reader holds all of it (38 MB of float32 at 16 kHz, more
    at the file's own rate), the streaming reader and its windows a few blocks (tracemalloc sees numpy's buffers)."""
    import tracemalloc

    from edge_dac.audio import load_audio, stream_audio
    from edge_dac.windows import stream_windows

    path = tmp_path / "ten-minutes.wav"
    rng = np.random.default_rng(3)
    with soundfile.SoundFile(path, "w", 32_000, 1, subtype="PCM_16") as handle:
        for _ in range(60):
            handle.write((rng.standard_normal(320_000) * 0.1).astype(np.float32))

    def peak_mb(read) -> float:
        tracemalloc.start()
        try:
            read()
            return tracemalloc.get_traced_memory()[1] / 1e6
        finally:
            tracemalloc.stop()

    counted = []

    def stream() -> None:
        counted.append(sum(1 for _ in stream_windows(stream_audio(path, RATE), 160_000, 160_000)))

    whole, streamed = peak_mb(lambda: load_audio(path, RATE)), peak_mb(stream)
    print(f"peak: whole file {whole:.1f} MB, streamed {streamed:.1f} MB")
    assert counted == [60]
    assert whole > 38 and streamed < 8, (whole, streamed)


def test_a_hop_longer_than_the_window_is_allowed_with_a_warning(model_dir, tmp_path):
    """Audio between windows is never captioned: allowed (a duty cycle), but said, with how much."""
    path = tmp_path / "five.wav"
    soundfile.write(path, np.random.default_rng(5).normal(0, 0.1, 5 * RATE).astype(np.float32), RATE)
    result = run_caption(model_dir, "--json", "--window", "1", "--hop", "1.5", path)
    assert result.returncode == 0, result.stderr
    spans = [(line["start"], line["end"]) for line in map(json.loads, result.stdout.splitlines())]
    assert spans == [(0.0, 1.0), (1.5, 2.5), (3.0, 4.0), (4.0, 5.0)]
    assert "--hop 1.5 s is longer than the 1 s window: 0.5 s of every 1.5 s are never captioned" in result.stderr
    plain = run_caption(model_dir, "--window", "1", "--hop", "1", path)
    assert "never captioned" not in plain.stderr


def test_plain_output_has_times_and_caption(model_dir, tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32), RATE)
    result = run_caption(model_dir, path)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{path}  [   0.00 -    1.00]")


def test_silent_and_too_short_files_are_reported_not_captioned(model_dir, tmp_path):
    """The daemon's energy gate, in ``edge-dac caption``: digital silence and a faint hiss (-80 dBFS)
    are "silent", a 0.1 s file is "too short", and neither gets a caption made up from nothing;
    sound in the same run is captioned, and ``--silence-dbfs -inf`` turns the gate off."""
    rng = np.random.default_rng(4)
    files = {
        "zeros": np.zeros(3 * RATE, dtype=np.float32),
        "hiss": (rng.standard_normal(3 * RATE) * 1e-4).astype(np.float32),
        "blip": (rng.standard_normal(RATE // 10) * 0.1).astype(np.float32),
        "sound": (rng.standard_normal(2 * RATE) * 0.1).astype(np.float32),
    }
    paths = {}
    for name, samples in files.items():
        paths[name] = tmp_path / f"{name}.wav"
        soundfile.write(paths[name], samples, RATE, subtype="FLOAT")
    result = run_caption(model_dir, "--json", *paths.values())
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {name: [line for line in lines if line["file"] == str(path)] for name, path in paths.items()}
    for name, reason in (("zeros", "silent"), ("hiss", "silent"), ("blip", "too short")):
        assert by_file[name] and all(
            line["skipped"] == reason and line["caption"] is None and line["candidates"] == [] for line in by_file[name]
        ), (name, by_file[name])
    [sound] = by_file["sound"]
    assert sound["skipped"] is None and sound["caption"] and sound["candidates"]
    assert [(line["start"], line["end"]) for line in by_file["zeros"]] == [(0.0, 2.0), (1.0, 3.0)]
    plain = run_caption(model_dir, paths["zeros"], paths["blip"])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == [
        f"{paths['zeros']}  [   0.00 -    2.00]  (silent: below -60 dBFS; not captioned)",
        f"{paths['zeros']}  [   1.00 -    3.00]  (silent: below -60 dBFS; not captioned)",
        f"{paths['blip']}  [   0.00 -    0.10]  (too short: 0.10 s of audio, under 0.5 s; not captioned)",
    ]
    ungated = run_caption(model_dir, "--json", "--silence-dbfs=-inf", paths["hiss"])
    assert ungated.returncode == 0, ungated.stderr
    assert all(json.loads(line)["caption"] for line in ungated.stdout.splitlines())


def make_bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), RATE)
    nan = tmp_path / "nan.wav"
    samples = np.zeros(RATE, dtype=np.float32)
    samples[100] = np.nan
    soundfile.write(nan, samples, RATE, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n")
    truncated = tmp_path / "truncated.wav"
    soundfile.write(truncated, np.zeros(RATE, dtype=np.float32), RATE)
    truncated.write_bytes(truncated.read_bytes()[:30])
    folder = tmp_path / "folder"
    folder.mkdir()
    return {
        "missing": (tmp_path / "missing.wav", "file not found"),
        "directory": (folder, "is a directory"),
        "empty": (empty, "audio is empty"),
        "nan": (nan, "NaN"),
        "not audio": (text, "not a readable audio file"),
        "truncated": (truncated, "not a readable audio file"),
    }


def test_bad_files_get_one_line_each_and_the_good_file_is_still_captioned(model_dir, tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, np.random.default_rng(1).normal(0, 0.1, RATE).astype(np.float32), RATE)
    bad = make_bad_inputs(tmp_path)
    files = [path for path, _ in bad.values()]
    result = run_caption(model_dir, "--json", files[0], good, *files[1:])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["file"] == str(good)
    errors = result.stderr.strip().splitlines()
    assert len(errors) == len(bad)
    for (path, expected), error in zip(bad.values(), errors, strict=True):
        assert str(path) in error and expected in error


def test_a_file_this_user_may_not_read_is_reported_as_permission_denied(model_dir, tmp_path):
    """Not as "not a readable audio file": the file is fine, its permissions are not. As root the
    command runs without the capabilities that let root read any file (setpriv), so the real
    kernel check refuses it."""
    import shutil

    locked = tmp_path / "locked.wav"
    soundfile.write(locked, np.random.default_rng(2).normal(0, 0.1, RATE).astype(np.float32), RATE)
    locked.chmod(0o000)
    command = [sys.executable, "-m", "edge_dac", "caption", "--model", str(model_dir), "--steps", "2",
               "--backend", "eager", str(locked)]
    if os.geteuid() == 0:
        assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop root's read-anything capability"
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *command]
    env = {**os.environ, "EDGE_DAC_ENGINES": str(model_dir.parent / "engines")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [error] = result.stderr.strip().splitlines()
    assert f"{locked}: permission denied" in error and "not a readable audio file" not in error


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--steps", "0"], "--steps must be positive"),
        (["--window", "30"], "longer than the model"),
        (["--event-guidance", "-1"], "--event-guidance must be 0 or more"),
        (["--precision", "int4"], "offers fp32, not int4"),  # the eager backend's only precision
    ],
)
def test_bad_arguments_are_one_line_errors(model_dir, tmp_path, args, expected):
    path = tmp_path / "a.wav"
    soundfile.write(path, np.zeros(RATE, dtype=np.float32), RATE)
    result = run_caption(model_dir, *args, path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_build_without_the_default_model_says_so(tmp_path, monkeypatch):
    from edge_dac import const
    from edge_dac.errors import CheckpointError

    monkeypatch.setattr(const, "DEFAULT_MODEL_DIR", tmp_path / "model")
    with pytest.raises(CheckpointError, match="no default model is shipped"):
        const.default_model_dir()


def test_the_same_audio_gets_the_same_caption_wherever_it_is(tmp_path):
    """A real 10 s demo scene tiled to 3 minutes, captioned by the real command with the shipped
    model in windows of exactly one tile: 18 identical windows, in batches of 4 (so they sit at
    every row of a batch, and the last batch is shorter). The sampler seeds each window's starting
    noise from the seed and the window's own samples, so every one gets the same caption."""
    from edge_dac.const import DEMO_DIR

    clip, rate = soundfile.read(sorted(DEMO_DIR.glob("*.flac"))[2], dtype="float32")
    assert rate == RATE and clip.size == 10 * RATE  # no resampling: the tiles stay sample-identical
    tiled = tmp_path / "three-minutes.wav"
    soundfile.write(tiled, np.tile(clip, 18), RATE, subtype="FLOAT")
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "caption", "--backend", "eager", "--json", "--window", "10",
         "--hop", "10", "--batch", "4", str(tiled)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["start"], line["end"]) for line in lines] == [(10.0 * i, 10.0 * i + 10) for i in range(18)]
    assert all(line["skipped"] is None for line in lines)
    captions = {line["caption"] for line in lines}
    assert len(captions) == 1, captions
    first = [c["caption"] for c in lines[0]["candidates"]]
    assert all([c["caption"] for c in line["candidates"]] == first for line in lines)
    scores = np.array([[c["score"] for c in line["candidates"]] for line in lines])
    assert np.allclose(scores, scores[0], atol=1e-4), scores


def test_the_shipped_model_captions_a_demo_scene_with_no_model_flag():
    from edge_dac.const import DEFAULT_MODEL_DIR, DEMO_DIR

    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 50e6  # inside the wheel: well under 50 MB
    scene = sorted(DEMO_DIR.glob("*.flac"))[0]
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "caption", "--backend", "eager", str(scene)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    caption_line = result.stdout.strip().splitlines()[-1]
    assert len(caption_line.split()) >= 3, result.stdout


@pytest.mark.parametrize("command", ["caption", "run"])
def test_an_unknown_log_level_is_named_not_a_traceback(command):
    """``--log-level`` used to reach loguru unchecked, which raised "Level 'BOGUS' does not exist"
    with a traceback; the parser names the accepted levels now (as argparse does: usage + error)."""
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "--log-level", "bogus", command, "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--log-level: invalid choice: 'BOGUS'" in result.stderr and "'DEBUG', 'INFO'" in result.stderr


def test_event_guidance_reaches_the_decoder_from_the_command_line():
    """The shipped model on a demo scene: with the event head steering the words (1) the candidates'
    words or scores differ from those written without it (0). (Steered harder, this scene's guided
    best is broken and the unguided decoder's is shown, by design.)"""
    from edge_dac.const import DEMO_DIR

    scene = sorted(DEMO_DIR.glob("*.flac"))[0]
    runs = {}
    for guidance in ("0", "1"):
        result = subprocess.run(
            [sys.executable, "-m", "edge_dac", "caption", "--backend", "eager", "--json", "--event-guidance", guidance,
             str(scene)],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        [line] = [json.loads(text) for text in result.stdout.splitlines()]
        runs[guidance] = [(c["caption"], round(c["score"], 4)) for c in line["candidates"]]
    assert runs["0"] != runs["1"], runs
