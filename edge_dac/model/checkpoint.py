"""Checkpoints: a directory with ``config.json``, ``model.safetensors``, ``tokenizer.json``, ``README.md``.

Loading verifies every tensor's name and shape against the dims in ``config.json``, and that every
weight is finite, and refuses a corrupt or mismatched checkpoint with one line saying what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from edge_dac import __version__
from edge_dac.errors import CheckpointError, first_line
from edge_dac.model.captioner import Captioner
from edge_dac.model.dims import ModelDims
from edge_dac.model.tokenizer import load_tokenizer, save_tokenizer

FORMAT = "edge-dac-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "README.md"


def save_captioner(
    captioner: Captioner,
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write ``captioner`` as a checkpoint directory; ``metadata`` (training run, metrics) goes to config.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in captioner.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": FORMAT})
    save_tokenizer(captioner.tokenizer, path / TOKENIZER_FILE)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "edge_dac_version": __version__,
        "dims": captioner.dims.to_dict(),
        "metadata": metadata or {},
    }
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    (path / CARD_FILE).write_text(card or _default_card(captioner, metadata or {}))
    return path


def _default_card(captioner: Captioner, metadata: dict[str, Any]) -> str:
    dims = captioner.dims
    params = sum(p.numel() for p in captioner.parameters())
    kind = "DAC (diffusion, non-autoregressive)" if dims.kind == "dac" else "autoregressive baseline"
    lines = [
        f"# edge-dac captioner ({dims.kind})",
        "",
        f"- Decoder: {kind}",
        f"- Parameters: {params / 1e6:.2f} M; vocabulary {dims.vocab_size}; window {dims.max_audio_seconds:g} s",
        f"- Written by edge-dac {__version__}",
    ]
    if metadata:
        lines += ["", "## Metadata", "", "```json", json.dumps(metadata, indent=2), "```"]
    return "\n".join(lines) + "\n"


def read_config(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or "dims" not in config:
        raise CheckpointError(f"{config_path}: not an edge-dac checkpoint config (no 'format: {FORMAT}' or 'dims')")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format {config['format_version']} is newer than this edge-dac "
            f"understands ({FORMAT_VERSION}); upgrade edge-dac"
        )
    return config


def load_captioner(path: str | Path, device: str | torch.device = "cpu") -> Captioner:
    """Load a checkpoint directory, verifying names, shapes and finite values; raises ``CheckpointError``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: model checkpoint directory not found (pass --model DIR)")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE) if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}; copy or export it again")
    config = read_config(path)
    dims = ModelDims.from_dict(config["dims"], source=str(path / CONFIG_FILE))
    try:
        tokenizer = load_tokenizer(path / TOKENIZER_FILE)
    except Exception as error:  # tokenizers raises a plain Exception on a bad file
        raise CheckpointError(f"{path / TOKENIZER_FILE}: unreadable tokenizer ({first_line(error)})") from None
    if len(tokenizer) != dims.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer.json has {len(tokenizer)} tokens but config.json says vocab_size "
            f"{dims.vocab_size}; the files come from different models"
        )
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except Exception as error:  # SafetensorError, OSError, ...: a truncated or foreign file
        raise CheckpointError(
            f"{path / WEIGHTS_FILE}: corrupt weights file ({first_line(error)}); copy or export it again"
        ) from None
    captioner = Captioner(dims, tokenizer)
    expected = captioner.state_dict()
    absent = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if absent or extra:
        detail = (f"missing {', '.join(absent[:3])}" if absent else "") + (
            f"{'; ' if absent else ''}unexpected {', '.join(extra[:3])}" if extra else ""
        )
        raise CheckpointError(f"{path / WEIGHTS_FILE}: tensors do not match config.json ({detail})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path / WEIGHTS_FILE}: tensor {name} has shape {tuple(tensor.shape)}, config.json needs "
                f"{tuple(expected[name].shape)}; the files come from different models"
            )
    for name, tensor in state.items():
        # A damaged file can hold well-formed garbage: 0xff bytes are NaN in fp16/fp32, and one NaN weight
        # turns every caption into an empty string with a NaN score.
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path / WEIGHTS_FILE}: tensor {name} holds {bad} NaN or infinite value(s) (a damaged file); "
                "copy or export the checkpoint again"
            )
    captioner.load_state_dict(state, strict=True)
    return captioner.to(device).eval()
