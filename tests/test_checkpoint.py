"""Checkpoint round trip and refusal of corrupt or mismatched checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

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


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_captioner(tmp_path / "nowhere")
