"""Checkpoint round trip and refusal of corrupt or mismatched checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edge_dac.errors import CheckpointError
from edge_dac.model import DecodingOptions, load_captioner, save_captioner
from tests.factories import tiny_captioner


@pytest.fixture()
def checkpoint(tmp_path):
    return save_captioner(tiny_captioner("dac"), tmp_path / "model")


@pytest.mark.parametrize("kind", ["dac", "ar"])
def test_round_trip_is_bit_exact(kind, tmp_path):
    captioner = tiny_captioner(kind)
    path = save_captioner(captioner, tmp_path / kind, metadata={"note": "test"})
    assert {p.name for p in path.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", "README.md"}
    loaded = load_captioner(path)
    assert loaded.dims == captioner.dims
    original, restored = captioner.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[name], restored[name]) for name in original)
    audio = torch.randn(2, captioner.dims.max_audio_samples) * 0.1
    options = DecodingOptions(steps=3, candidates=2, beam_size=2)
    assert loaded.generate(audio, options) == captioner.generate(audio, options)
    # Saving what was loaded gives the same bytes.
    again = save_captioner(loaded, tmp_path / f"{kind}-again", metadata={"note": "test"})
    assert (again / "model.safetensors").read_bytes() == (path / "model.safetensors").read_bytes()


def _truncate(path):
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _wrong_shapes(path):
    other = save_captioner(tiny_captioner("ar"), path.parent / "other")
    shutil.copy(other / "model.safetensors", path / "model.safetensors")


def _resized_tensor(path):
    from safetensors.torch import save_file

    state = load_file(str(path / "model.safetensors"))
    state["decoder.positions"] = torch.zeros(5, state["decoder.positions"].shape[1])
    save_file(state, str(path / "model.safetensors"))


def _ff_in_the_middle(path):
    """What a damaged disk or copy leaves: 4 KiB of 0xff bytes, which are NaN in fp16 and fp32."""
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    weights.write_bytes(bytes(data))


def _missing_tokenizer(path):
    (path / "tokenizer.json").unlink()


def _garbage_tokenizer(path):
    (path / "tokenizer.json").write_text("{not json")


def _garbage_config(path):
    (path / "config.json").write_text("{")


def _unknown_dimension(path):
    config = json.loads((path / "config.json").read_text())
    config["dims"]["wings"] = 2
    (path / "config.json").write_text(json.dumps(config))


CORRUPTIONS = {
    "truncated safetensors": (_truncate, "corrupt weights"),
    "weights of another model": (_wrong_shapes, "do not match"),
    "wrong tensor shape": (_resized_tensor, "has shape"),
    "0xff bytes in the weights": (_ff_in_the_middle, "NaN or infinite"),
    "missing tokenizer": (_missing_tokenizer, "missing tokenizer.json"),
    "garbage tokenizer": (_garbage_tokenizer, "unreadable tokenizer"),
    "garbage config": (_garbage_config, "not valid JSON"),
    "unknown dimension": (_unknown_dimension, "unknown model dimension"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_checkpoint_is_refused_with_one_line(name, checkpoint):
    corrupt, expected = CORRUPTIONS[name]
    corrupt(checkpoint)
    with pytest.raises(CheckpointError) as raised:
        load_captioner(checkpoint)
    message = str(raised.value)
    assert expected in message and "\n" not in message


def test_cli_reports_corrupt_checkpoint_without_traceback(checkpoint, tmp_path):
    _truncate(checkpoint)
    audio = tmp_path / "a.wav"
    import soundfile

    soundfile.write(audio, [0.0] * 16000, 16000)
    result = subprocess.run(
        [sys.executable, "-m", "edge_dac", "caption", "--model", str(checkpoint), str(audio)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "corrupt weights" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["caption", "run"])
def test_damaged_copy_of_the_shipped_model_is_refused_by_caption_and_run(command, tmp_path):
    """The shipped model with 4 KiB of 0xff in the middle used to load: empty captions with "score": NaN."""
    from edge_dac.const import default_model_dir

    copy = Path(shutil.copytree(default_model_dir(), tmp_path / "model"))
    _ff_in_the_middle(copy)
    demo = sorted((Path(__file__).resolve().parents[1] / "edge_dac" / "assets" / "demo").glob("*.flac"))[0]
    args = {
        "caption": ["caption", "--backend", "eager", "--model", str(copy), "--json", str(demo)],
        "run": ["run", "--model", str(copy), "--source", f"file:{demo}", "--fast",
                "--endpoint", f"ipc://{tmp_path}/captions.sock"],
    }[command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EDGE_DAC_ENGINES": str(tmp_path / "engines")}
    result = subprocess.run([sys.executable, "-m", "edge_dac", *args], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode != 0
    assert result.stdout == ""  # no caption line at all
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{copy / 'model.safetensors'}" in lines[0] and "NaN or infinite" in lines[0]
    assert "copy or export the checkpoint again" in lines[0]


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_captioner(tmp_path / "nowhere")
