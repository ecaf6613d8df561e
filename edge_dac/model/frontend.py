"""Audio front end: waveform -> log-mel spectrogram with plain torch ops.

The STFT is a windowed DFT basis applied to the signal's frames instead of ``torch.stft``: it runs
on CPU and GPU alike and exports cleanly to ``torch.export``, ONNX and TensorRT (no complex
tensors). Normalisation follows Whisper: log10, clamp to 8 decades below the clip's peak, scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_dac.model.dims import ModelDims


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0) -> np.ndarray:
    """Triangular HTK-mel filters, (n_mels, n_fft // 2 + 1), each filter normalised to unit area."""

    def hz_to_mel(hz: np.ndarray | float) -> np.ndarray | float:
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(hz_to_mel(f_min), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    filters = np.zeros((n_mels, fft_freqs.size), dtype=np.float64)
    for i in range(n_mels):
        left, centre, right = hz_points[i : i + 3]
        rising = (fft_freqs - left) / (centre - left)
        falling = (right - fft_freqs) / (right - centre)
        filters[i] = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return filters.astype(np.float32)


def each_chunk(
    x: torch.Tensor, size: int, fn: Callable[[torch.Tensor], torch.Tensor], time_dim: int
) -> torch.Tensor:
    """``fn`` on (batch, ..., time) ``x`` cut along its last axis into chunks of ``size`` (a shorter
    last one on its own), every chunk alone as one batch; the outputs joined in time order along
    their ``time_dim``. How a streaming encoder's window is computed as its chunks."""
    if x.shape[-1] <= size:
        return fn(x)
    batch, chunks = x.shape[0], x.shape[-1] // size
    whole = chunks * size
    pieces = x[..., :whole].unflatten(-1, (chunks, size)).movedim(-2, 1).flatten(0, 1)
    out = fn(pieces).unflatten(0, (batch, chunks)).movedim(1, time_dim).flatten(time_dim, time_dim + 1)
    if x.shape[-1] > whole:
        out = torch.cat([out, fn(x[..., whole:])], dim=time_dim)
    return out


class LogMel(nn.Module):
    """(batch, samples) float waveform at ``dims.sample_rate`` -> (batch, n_mels, samples // hop)."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.n_fft, self.hop_length = dims.n_fft, dims.hop_length
        n = torch.arange(dims.n_fft, dtype=torch.float64)
        k = torch.arange(dims.n_fft // 2 + 1, dtype=torch.float64)
        window = torch.hann_window(dims.n_fft, periodic=True, dtype=torch.float64)
        angle = 2.0 * math.pi * k[:, None] * n[None, :] / dims.n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])
        # Not persistent: derived from the dims, so checkpoints hold only learned weights.
        self.register_buffer("dft_basis", basis.float(), persistent=False)  # (2 x bins, n_fft)
        mel = mel_filterbank(dims.sample_rate, dims.n_fft, dims.n_mels)
        self.register_buffer("mel_filters", torch.from_numpy(mel), persistent=False)
        self.chunk_samples = dims.encoder_chunk_samples

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.chunk_samples:
            # A streaming encoder's window: each chunk on its own (its own peak, no spectral frames
            # across chunk edges), exactly as when the chunks arrive one hop at a time.
            return each_chunk(audio, self.chunk_samples, self.log_mel, time_dim=2)
        return self.log_mel(audio)

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, 2 x bins, samples // hop): the real and imaginary DFT of each
        centred frame.

        Traced for export or compilation, a strided one-channel ``conv1d`` with the basis (ONNX
        Runtime's fastest form). In eager PyTorch the frames are cut from blocks of gcd(n_fft, hop)
        samples by slices and multiplied by the basis at once: the same numbers within float
        rounding at half the cost (4.3 against 8.2 ms for 10 s, one thread).
        """
        n_fft, hop = self.n_fft, self.hop_length
        frames = audio.shape[-1] // hop
        padded = F.pad(audio, (n_fft // 2, n_fft // 2))
        if torch.compiler.is_compiling():
            return F.conv1d(padded.unsqueeze(1), self.dft_basis.unsqueeze(1), stride=hop)[..., :frames]
        block = math.gcd(n_fft, hop)
        blocks = padded[..., : padded.shape[-1] // block * block].unflatten(-1, (-1, block))
        stride = hop // block  # blocks from one frame's start to the next
        windows = torch.cat([blocks[:, k::stride][:, :frames] for k in range(n_fft // block)], dim=-1)
        return (windows @ self.dft_basis.T).transpose(1, 2)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        real, imag = self.spectrum(audio).chunk(2, dim=1)
        power = real.square() + imag.square()
        log_mel = torch.log10(torch.matmul(self.mel_filters, power).clamp_min(1e-10))
        peak = log_mel.amax(dim=(1, 2), keepdim=True)
        log_mel = torch.maximum(log_mel, peak - 8.0)
        return (log_mel + 4.0) / 4.0
