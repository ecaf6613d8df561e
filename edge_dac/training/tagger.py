"""Encoder pretraining: the audio encoder as a multi-label event tagger.

The seed paper's ablation says the audio encoder and its pretraining matter most. Here the
encoder (same ``ModelDims`` as the captioner's) learns to tell which event classes a scene holds,
through the captioner's own event head (``EventHead``: frame logits, linear-softmax pooling to
clip probabilities), trained with the captioner's clip-level tagging loss
(``objectives.TaggerObjective``). A captioning run then starts from these encoder weights
(``model.encoder_init``).

A tagger run directory holds ``config.json`` (format ``edge-dac-tagger``, dims with the event
classes, classes) and ``model.safetensors`` (``encoder.*`` and ``head.frame.*``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edge_dac.errors import CheckpointError
from edge_dac.model.dims import ModelDims
from edge_dac.model.encoder import AudioEncoder, EventHead
from edge_dac.model.frontend import LogMel

TAGGER_FORMAT = "edge-dac-tagger"


class EventTagger(nn.Module):
    def __init__(self, dims: ModelDims, classes: list[str]):
        super().__init__()
        self.dims = dataclasses.replace(dims, event_classes=tuple(classes))
        self.classes = list(classes)
        self.frontend = LogMel(self.dims)
        self.encoder = AudioEncoder(self.dims)
        self.head = EventHead(self.dims)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) log-mel -> (batch, encoder frames, classes) frame logits."""
        return self.head(self.encoder(mel))

    def clip_probabilities(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, n_mels, frames) log-mel -> (batch, classes) probability that each class is in the clip."""
        return EventHead.clip_probabilities(self(mel))

    def targets(self, labels: list[set[str]]) -> torch.Tensor:
        return multi_hot(labels, self.classes)


def multi_hot(labels: list[set[str]], classes: list[str]) -> torch.Tensor:
    """(clips, classes) 0/1 targets: which of ``classes`` each clip holds (others are ignored)."""
    index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(labels), len(classes))
    for row, names in enumerate(labels):
        for name in names:
            if name in index:
                targets[row, index[name]] = 1.0
    return targets


def save_tagger(tagger: EventTagger, path: str | Path, metadata: dict | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in tagger.state_dict().items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": TAGGER_FORMAT})
    config = {
        "format": TAGGER_FORMAT,
        "dims": tagger.dims.to_dict(),
        "classes": tagger.classes,
        "metadata": metadata or {},
    }
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_encoder_weights(encoder: AudioEncoder, path: str | Path) -> int:
    """Copy the ``encoder.*`` weights of a tagger run or captioner checkpoint into ``encoder``;
    returns how many tensors were copied. Shapes must match (same encoder dims)."""
    path = Path(path)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(
            f"model.encoder_init: {weights} not found; point it at a tagger run's best/ or a checkpoint"
        )
    state = {k.removeprefix("encoder."): v for k, v in load_file(str(weights)).items() if k.startswith("encoder.")}
    expected = encoder.state_dict()
    if set(state) != set(expected):
        raise CheckpointError(f"model.encoder_init: {weights} holds no matching audio encoder (different layers)")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"model.encoder_init: {weights}: encoder.{name} has shape {tuple(tensor.shape)}, this model needs "
                f"{tuple(expected[name].shape)}; use the same encoder dims in both configs"
            )
    encoder.load_state_dict(state)
    return len(state)
