"""Engines: every CPU backend writes eager's captions; built engines are keyed, verified and rebuilt.

Real parts throughout: a small random-weight DAC model saved as a checkpoint, the bundled demo
scenes as audio, engines really exported and run. TensorRT cannot exist here (no GPU, no libnvinfer):
its test checks that it is skipped with a reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from loguru import logger

from edge_dac.const import default_engines_dir, default_model_dir
from edge_dac.engines import load_engine
from edge_dac.engines.clips import demo_windows
from edge_dac.engines.select import unavailable
from edge_dac.engines.store import MANIFEST, file_sha256
from edge_dac.errors import EdgeDacError
from edge_dac.model import DecodingOptions, save_captioner
from edge_dac.model.decoding import forget_audio
from tests.factories import tiny_captioner

STEPS, CANDIDATES = 4, 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_captioner(tiny_captioner("dac", seconds=2.0), tmp_path_factory.mktemp("model") / "tiny-dac")


@pytest.fixture(scope="module")
def windows(model_dir):
    engine = load_engine(model_dir, "eager")
    all_windows = demo_windows(engine.sample_rate, engine.window_samples)
    return all_windows[:: len(all_windows) // 12][:12]  # 12 windows spread over the five demo scenes


@pytest.fixture(scope="module")
def eager_captions(model_dir, windows):
    return load_engine(model_dir, "eager").caption(windows, STEPS, CANDIDATES)


@pytest.fixture(scope="module")
def engines_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def onnx_folder(model_dir, engines_dir):
    return load_engine(model_dir, "onnxruntime", engines_dir=engines_dir).folder


@pytest.fixture
def logs():
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    yield lines
    logger.remove(sink)


def texts(results):
    return [[candidate.caption for candidate in candidates] for candidates in results]


@pytest.fixture(scope="module")
def coded_model_dir(tmp_path_factory):
    """A DAC model with wording codes: its step graph has a ``code`` input."""
    captioner = tiny_captioner("dac", seconds=2.0, wording_codes=3)
    torch.nn.init.normal_(captioner.decoder.wording.weight, std=1.0)  # untrained codes are near zero
    return save_captioner(captioner, tmp_path_factory.mktemp("coded") / "tiny-dac-codes")


@pytest.fixture(scope="module")
def events_model_dir(tmp_path_factory):
    """A DAC model with an event head: its audio graph also gives the clip probabilities ranking reads."""
    return save_captioner(tiny_captioner("dac", seconds=2.0, event_classes=("dog barking", "rain", "door")),
                          tmp_path_factory.mktemp("events") / "tiny-dac-events")


@pytest.fixture(scope="module")
def heard_model_dir(tmp_path_factory):
    """A DAC model whose event head (with a hidden layer, as shipped) hears with YAMNet: a hearing
    graph beside its audio graph."""
    captioner = tiny_captioner("dac", seconds=2.0, event_classes=("dog barking", "rain", "door"),
                               event_features="yamnet", event_hidden=16)
    torch.nn.init.normal_(captioner.events.hidden[0].weight, std=0.1)  # a head that reads what YAMNet hears
    torch.nn.init.normal_(captioner.events.frame.weight, std=0.5)
    return save_captioner(captioner, tmp_path_factory.mktemp("heard") / "tiny-dac-yamnet")


@pytest.fixture(scope="module")
def memory_model_dir(tmp_path_factory):
    """A DAC model whose denoiser also cross-attends to its YAMNet head's frame probabilities
    (``event_memory``): the audio graph's keys and values hold one more token per second."""
    captioner = tiny_captioner("dac", seconds=2.0, event_classes=("dog barking", "rain", "door"),
                               event_features="yamnet", event_hidden=16, event_memory=True)
    torch.nn.init.normal_(captioner.events.hidden[0].weight, std=0.1)
    torch.nn.init.normal_(captioner.events.frame.weight, std=0.5)
    torch.nn.init.normal_(captioner.decoder.event_proj.weight, std=2.0)  # memory the captions depend on
    return save_captioner(captioner, tmp_path_factory.mktemp("memory") / "tiny-dac-memory")


@pytest.fixture(scope="module")
def streaming_model_dir(tmp_path_factory):
    """A DAC model with a streaming encoder (0.4 s chunks of its 2 s window)."""
    return save_captioner(tiny_captioner("dac", stem="cnn2d", chunk_seconds=0.4),
                          tmp_path_factory.mktemp("streaming") / "tiny-dac-streaming")


@pytest.mark.parametrize(
    ("backend", "variant"),
    [
        ("onnxruntime", "plain"),
        ("onnxruntime", "coded"),
        ("onnxruntime", "streaming"),
        ("onnxruntime", "events"),
        ("onnxruntime", "heard"),
        ("onnxruntime", "memory"),
        pytest.param("torch-compile", "plain", marks=pytest.mark.slow),  # Inductor: 1-3 min on 2 cores
    ],
)
def test_every_fp32_backend_writes_eager_captions_from_the_same_seed(
    backend, variant, model_dir, coded_model_dir, streaming_model_dir, events_model_dir, heard_model_dir,
    memory_model_dir, engines_dir, windows, eager_captions,
):
    folder = {"plain": model_dir, "coded": coded_model_dir, "streaming": streaming_model_dir,
              "events": events_model_dir, "heard": heard_model_dir, "memory": memory_model_dir}[variant]
    coded = variant == "coded"
    expected = eager_captions if variant == "plain" else load_engine(folder, "eager").caption(
        windows, STEPS, CANDIDATES)
    engine = load_engine(folder, backend, engines_dir=engines_dir)
    assert engine.backend == backend
    assert texts(engine.caption(windows, STEPS, CANDIDATES)) == texts(expected)
    assert texts(engine.caption(windows[:1], STEPS, 1)) == texts(load_engine(folder, "eager").caption(
        windows[:1], STEPS, 1))
    if coded:  # the codes reach the compiled graph: K candidates of one window are K wordings
        assert any(len({c.caption for c in window}) > 1 for window in expected)
    if variant in ("events", "heard", "memory"):  # the compiled audio graph gives eager's clip probabilities
        batch = torch.from_numpy(windows[:4])
        _, expected_events = load_engine(folder, "eager").runner.context(batch, 1)
        _, events = engine.runner.context(batch, CANDIDATES)
        assert events.shape == (4, 3)
        torch.testing.assert_close(events, expected_events, atol=1e-5, rtol=1e-4)
    if variant == "memory":  # the compiled keys hold one more token per second: the event frames
        dims = engine.captioner.dims
        keys = engine.runner.context(torch.from_numpy(windows[:1]), 1)[0][0]
        eager_keys = load_engine(folder, "eager").runner.context(torch.from_numpy(windows[:1]), 1)[0][0][0]
        assert keys.shape[-2] == eager_keys.shape[-2] == dims.max_encoder_frames + dims.event_frames == 50 + 2



@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_a_streaming_encoder_encodes_each_chunk_of_sliding_windows_once(backend, streaming_model_dir, engines_dir):
    """Windows sliding by one chunk over a real demo scene: each new window encodes only its newest
    chunk, and gets the captions it gets alone (the cache changes the cost, never the result)."""
    engine = load_engine(streaming_model_dir, backend, engines_dir=engines_dir)
    chunk = engine.captioner.dims.encoder_chunk_samples
    scene = demo_windows(engine.sample_rate, 5 * engine.window_samples, hop_fraction=1.0)[0]
    windows = np.stack([scene[i : i + engine.window_samples] for i in range(0, 6 * chunk, chunk)])
    alone = [load_engine(streaming_model_dir, backend, engines_dir=engines_dir).caption(w[None], STEPS, 2)[0]
             for w in windows]
    streamed = [engine.caption(w[None], STEPS, 2)[0] for w in windows]
    per_window = engine.window_samples // chunk
    assert engine.runner.chunks.encoded == per_window + len(windows) - 1
    assert engine.runner.chunks.reused == (per_window - 1) * (len(windows) - 1)
    assert texts(streamed) == texts(alone)
    assert texts(engine.caption(windows, STEPS, 2)) == texts(alone)  # in one batch, from the cache


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_yamnet_hears_each_second_of_sliding_windows_once(backend, heard_model_dir, engines_dir):
    """Windows sliding by one second over a real demo scene: YAMNet hears only each window's newest
    second, and the event head's clip probabilities are those of hearing the whole window at once."""
    engine = load_engine(heard_model_dir, backend, engines_dir=engines_dir)
    rate, size = engine.sample_rate, engine.window_samples
    scene = demo_windows(rate, 5 * size, hop_fraction=1.0)[0]
    windows = torch.from_numpy(np.stack([scene[i : i + size] for i in range(0, 6 * rate, rate)]))
    streamed = torch.cat([engine.runner.context(w[None], 1)[1] for w in windows])
    per_window = size // rate
    assert engine.runner.heard.encoded == per_window + len(windows) - 1
    assert engine.runner.heard.reused == (per_window - 1) * (len(windows) - 1)
    captioner = load_engine(heard_model_dir, "eager").captioner
    with torch.no_grad():
        whole = captioner.detect_events(captioner.encode_audio(windows), windows)[1]  # YAMNet on whole windows
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-4)
    assert (whole.max(0).values - whole.min(0).values).max() > 1e-3  # the windows are heard differently
    forget_audio(engine.runner)  # what speed figures of independent clips do before each timed call
    engine.runner.context(windows[-1:], 1)
    assert engine.runner.heard.encoded == 2 * per_window + len(windows) - 1  # heard afresh


@pytest.mark.parametrize(
    "backend", ["onnxruntime", pytest.param("torch-compile", marks=pytest.mark.slow)]  # Inductor: minutes
)
def test_the_shipped_model_writes_eager_captions_on_every_backend_at_the_default_decoding(
    backend, engines_dir
):
    """The shipped DAC's sampler (distilled to its few default steps) exported as it ships: the same
    captions as eager PyTorch, at the daemon's steps and candidates, on real demo windows."""
    defaults = DecodingOptions()
    eager = load_engine(default_model_dir(), "eager")
    clips = demo_windows(eager.sample_rate, eager.window_samples)  # the five demo scenes, 10 s each
    expected = eager.caption(clips, defaults.steps, defaults.candidates)
    engine = load_engine(default_model_dir(), backend, engines_dir=engines_dir)
    assert engine.backend == backend
    assert texts(engine.caption(clips, defaults.steps, defaults.candidates)) == texts(expected)

def test_onnxruntime_int8_reports_its_quality_truthfully(model_dir, engines_dir, onnx_folder):
    """The quality an int8 build reports is what its captions really are against fp32 on the demo clips."""
    engine = load_engine(model_dir, "onnxruntime", engines_dir=engines_dir, precision="int8")
    quality = json.loads((engine.folder / MANIFEST).read_text())["quality"]
    clips = demo_windows(engine.sample_rate, engine.window_samples)
    assert quality["clips"] == len(clips) == 45  # 5 scenes x 9 windows of 2 s, hop 1 s
    fp32 = load_engine(model_dir, "onnxruntime", engines_dir=engines_dir)
    int8_best = [r[0].caption for r in engine.caption(clips, quality["steps"], quality["candidates"])]
    fp32_best = [r[0].caption for r in fp32.caption(clips, quality["steps"], quality["candidates"])]
    differing = sum(a != b for a, b in zip(int8_best, fp32_best, strict=True))
    assert quality["differing_captions"] == differing
    assert quality["differing_share"] == round(differing / len(clips), 4)
    assert 0.0 < quality["word_agreement"] <= 1.0


def test_changed_weights_build_a_new_engine_and_a_mismatched_manifest_is_rebuilt(
    model_dir, engines_dir, onnx_folder, tmp_path, logs
):
    captioner = tiny_captioner("dac", seconds=2.0)
    captioner.decoder.lm_head.bias.data += 0.01
    other_model = save_captioner(captioner, tmp_path / "tiny-dac")  # same folder name, other weights
    other = load_engine(other_model, "onnxruntime", engines_dir=engines_dir)
    assert other.folder != onnx_folder and (other.folder / "audio.onnx").is_file()
    # A folder whose manifest was written for other inputs (here: another onnxruntime version) is not used.
    manifest = json.loads((other.folder / MANIFEST).read_text())
    manifest["key_fields"]["versions"]["onnxruntime"] = "0.0.1"
    (other.folder / MANIFEST).write_text(json.dumps(manifest))
    again = load_engine(other_model, "onnxruntime", engines_dir=engines_dir)
    assert again.folder == other.folder
    assert any("cache key mismatch" in line and "rebuilding" in line for line in logs)
    assert json.loads((again.folder / MANIFEST).read_text())["key_fields"]["versions"]["onnxruntime"] != "0.0.1"


def test_corrupt_engine_file_is_rebuilt_with_a_warning(model_dir, onnx_folder, tmp_path, windows, eager_captions, logs):
    engines = tmp_path / "engines"
    folder = engines / onnx_folder.name
    shutil.copytree(onnx_folder, folder)
    step = folder / "step.onnx"
    step.write_bytes(step.read_bytes()[: step.stat().st_size // 2])  # an interrupted copy
    engine = load_engine(model_dir, "onnxruntime", engines_dir=engines)
    assert engine.folder == folder
    assert any("step.onnx is corrupt" in line and "rebuilding" in line for line in logs)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert file_sha256(step) == manifest["files"]["step.onnx"]["sha256"]
    assert texts(engine.caption(windows[:4], STEPS, CANDIDATES)) == texts(eager_captions[:4])


def test_auto_falls_back_when_an_engine_does_not_load(model_dir, onnx_folder, tmp_path, logs):
    engines = tmp_path / "engines"
    folder = engines / onnx_folder.name
    shutil.copytree(onnx_folder, folder)
    # Not corrupt in transit (the checksum matches) but unreadable for ONNX Runtime: not rebuilt, skipped.
    (folder / "audio.onnx").write_bytes(b"this is no onnx model")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["audio.onnx"] = {"bytes": 21, "sha256": file_sha256(folder / "audio.onnx")}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    engine = load_engine(model_dir, "auto", engines_dir=engines, order=("onnxruntime", "eager"))
    assert engine.backend == "eager"
    assert any("skipped onnxruntime (cpu): failed to load" in line for line in logs)
    assert any("engine auto: eager" in line for line in logs)
    with pytest.raises(EdgeDacError, match="does not load"):  # asked for by name, the failure is not hidden
        load_engine(model_dir, "onnxruntime", engines_dir=engines)


def test_tensorrt_absent_is_skipped_with_a_reason(model_dir, engines_dir, logs):
    captioner = load_engine(model_dir, "eager").captioner
    reason = unavailable("tensorrt", "cuda", captioner)
    assert reason and "\n" not in reason
    with pytest.raises(EdgeDacError, match="backend tensorrt cannot run here"):
        load_engine(model_dir, "tensorrt", engines_dir=engines_dir)
    engine = load_engine(model_dir, "auto", engines_dir=engines_dir, order=("tensorrt", "onnxruntime"))
    assert engine.backend == "onnxruntime"
    assert any(f"skipped tensorrt (cuda): {reason}" in line for line in logs)


def test_autoregressive_models_run_on_eager_only(tmp_path):
    model = save_captioner(tiny_captioner("ar", seconds=2.0), tmp_path / "tiny-ar")
    with pytest.raises(EdgeDacError, match="DAC"):
        load_engine(model, "onnxruntime", engines_dir=tmp_path / "engines")
    engine = load_engine(model, "auto", engines_dir=tmp_path / "engines", order=("onnxruntime", "eager"))
    assert engine.backend == "eager"
    assert len(engine.caption(np.zeros((1, engine.window_samples), np.float32), 1, 2)[0]) == 2


def test_engines_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGE_DAC_ENGINES", raising=False)
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path}/cache:/other")
    assert default_engines_dir() == tmp_path / "cache" / "engines"
    monkeypatch.setenv("EDGE_DAC_ENGINES", str(tmp_path / "mine"))
    assert default_engines_dir() == tmp_path / "mine"


def test_export_bad_arguments_give_one_line_errors(model_dir, tmp_path):
    cases = {
        ("--backend", "eager"): "eager has nothing to export",
        ("--backend", "onnxruntime", "--precision", "fp16"): "onnxruntime offers fp32 or int8",
        ("--backend", "onnxruntime", "--max-batch", "8"): "--max-batch applies to tensorrt",
        ("--backend", "tensorrt", "--max-batch", "lots"): "--max-batch must be a whole number",
        ("--backend", "tensorrt"): "cannot export for tensorrt",
    }
    runs = {
        case: subprocess.Popen(
            [sys.executable, "-m", "edge_dac", "export", "--model", str(model_dir), "--engines", str(tmp_path), *case],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for case in cases
    }
    for case, process in runs.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 2, (case, err)
        assert len(err.strip().splitlines()) == 1 and cases[case] in err, (case, err)
        assert "Traceback" not in err and out == ""
