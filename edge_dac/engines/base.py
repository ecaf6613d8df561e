"""The engine interface used by the daemon, ``edge-dac caption`` and ``edge-dac eval``.

Every backend runs the same pipeline: windows -> audio graph (once per window) -> the DDIM loop of
``DiffusionDecoder.denoise`` with the backend's step graph -> ``Captioner.rank``. Only the two
graph calls differ between backends; the starting noise is drawn here, on the CPU from a seeded
generator, so every backend (CPU or GPU) starts from the very same numbers and fp32 backends write
the very same captions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from edge_dac.engines.store import file_sha256
from edge_dac.errors import EdgeDacError
from edge_dac.model.captioner import Captioner
from edge_dac.model.checkpoint import WEIGHTS_FILE
from edge_dac.model.decoding import Candidate, DecodingOptions
from edge_dac.model.diffusion import DiffusionDecoder


def model_id_of(model_dir: Path) -> str:
    """``<folder name>@<first 12 hex of the weights' sha256>``: names the exact weights in every message."""
    return f"{model_dir.resolve().name}@{file_sha256(model_dir / WEIGHTS_FILE)[:12]}"


class Runner(Protocol):
    """A backend's two graph calls. ``context`` returns whatever ``step`` reads the audio from."""

    def context(self, windows: torch.Tensor, candidates: int) -> Any: ...

    def step(
        self, noisy: torch.Tensor, t: torch.Tensor, self_cond: torch.Tensor, code: torch.Tensor, context: Any
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class EagerRunner:
    """The model's own modules, exactly the path of ``Captioner.generate``."""

    def __init__(self, captioner: Captioner):
        self.captioner = captioner
        self.decoder = captioner.decoder

    def context(self, windows: torch.Tensor, candidates: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        features = self.captioner.encode_audio(windows)
        return self.decoder.candidate_kv(self.decoder.prepare_audio(features), candidates)

    def step(self, noisy, t, self_cond, code, context):
        return self.decoder.step(noisy, t, self_cond, code, context)


class CaptionEngine:
    """Turns (batch, samples) float32 windows at ``sample_rate`` into ranked candidate captions."""

    backend = "none"

    def __init__(
        self,
        captioner: Captioner,
        model_id: str,
        seed: int = 0,
        runner: Runner | None = None,
        device: str = "cpu",
        max_windows: int | None = None,
    ):
        self.captioner = captioner
        self.model_id = model_id
        self.seed = seed
        self.sample_rate = captioner.dims.sample_rate
        self.window_samples = captioner.dims.max_audio_samples
        self.runner = runner
        self.device = device
        # Engines built for a batch range (TensorRT) take at most this many windows / step rows a call.
        self.max_windows = max_windows
        self.max_rows: int | None = None
        self.precision = "fp32"
        self.folder: Path | None = None  # the built engine's folder, for compiled backends

    def caption(self, windows: np.ndarray, steps: int = 6, candidates: int = 5) -> list[list[Candidate]]:
        if self.runner is None:
            raise NotImplementedError
        options = DecodingOptions(steps=steps, candidates=candidates, seed=self.seed)
        with torch.inference_mode():
            return self._sample(torch.as_tensor(windows, dtype=torch.float32), options)

    def _sample(self, audio: torch.Tensor, options: DecodingOptions) -> list[list[Candidate]]:
        captioner, decoder = self.captioner, self.captioner.decoder
        assert isinstance(decoder, DiffusionDecoder) and self.runner is not None
        audio = captioner.fit_length(audio[None] if audio.ndim == 1 else audio)
        dims, k = captioner.dims, options.candidates
        generator = torch.Generator().manual_seed(options.seed) if options.seed is not None else None
        noise = torch.randn((audio.shape[0] * k, dims.max_caption_tokens, dims.embedding_dim), generator=generator)
        noise = noise * options.noise_scale
        per_call = min(audio.shape[0], self.max_windows or audio.shape[0], (self.max_rows or k * audio.shape[0]) // k)
        if per_call < 1:
            raise EdgeDacError(f"{k} candidates per window exceed this engine's {self.max_rows} rows per call")
        results: list[list[Candidate]] = []
        for first in range(0, audio.shape[0], per_call):
            chunk = audio[first : first + per_call].to(self.device)
            context = self.runner.context(chunk, k)
            rows = noise[first * k : (first + chunk.shape[0]) * k].to(self.device)
            codes = decoder.candidate_codes(chunk.shape[0], k).to(self.device)
            tokens, log_probs = decoder.denoise(rows, context, options.steps, self.runner.step, codes)
            tokens = tokens.view(-1, k, dims.max_caption_tokens).cpu()
            log_probs = log_probs.view(-1, k, dims.max_caption_tokens).float().cpu()
            results += [captioner.rank(tokens[i].tolist(), log_probs[i].tolist(), options) for i in range(len(tokens))]
        return results

    def warm_up(self, batch: int = 1) -> None:
        """One pass on silence, so the first real window does not pay for allocation and compilation."""
        self.caption(np.zeros((batch, self.window_samples), dtype=np.float32), steps=1, candidates=1)


class EagerEngine(CaptionEngine):
    """Plain PyTorch: always available, the reference every other backend must match."""

    backend = "eager"

    def __init__(self, captioner: Captioner, model_id: str, seed: int = 0, device: str = "cpu"):
        captioner = captioner.to(device).eval()
        super().__init__(captioner, model_id, seed, runner=EagerRunner(captioner), device=device)

    def caption(self, windows: np.ndarray, steps: int = 6, candidates: int = 5) -> list[list[Candidate]]:
        if self.captioner.dims.kind == "dac":
            return super().caption(windows, steps, candidates)
        options = DecodingOptions(steps=steps, candidates=candidates, beam_size=candidates, seed=self.seed)
        with torch.inference_mode():  # the autoregressive baseline: beam search, nothing to compile
            return self.captioner.generate(torch.as_tensor(windows, dtype=torch.float32), options)
