"""The captioner: log-mel front end + audio encoder + caption decoder (DAC or AR) + tokenizer.

One object used unchanged by training, export, evaluation and the daemon.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from edge_dac.model.autoregressive import ARDecoder
from edge_dac.model.decoding import Candidate, DecodingOptions, decode
from edge_dac.model.diffusion import DiffusionDecoder
from edge_dac.model.dims import ModelDims
from edge_dac.model.encoder import AudioEncoder, EventHead
from edge_dac.model.frontend import LogMel
from edge_dac.model.hearing import EMBEDDING_WIDTH, YAMNet
from edge_dac.model.tokenizer import BOS, EOS, PAD, CaptionTokenizer, encode_caption


class Captioner(nn.Module):
    def __init__(self, dims: ModelDims, tokenizer: CaptionTokenizer):
        super().__init__()
        dims.validate()
        if len(tokenizer) != dims.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but dims.vocab_size is {dims.vocab_size}")
        self.dims = dims
        self.tokenizer = tokenizer
        self.pad_id, self.bos_id, self.eos_id = tokenizer.convert_tokens_to_ids([PAD, BOS, EOS])
        self.frontend = LogMel(dims)
        self.encoder = AudioEncoder(dims)
        # Frame-level event detection on the encoder's output or on YAMNet's (fixed weights, not in
        # the checkpoint); the head is kept in the checkpoint so finetuning continues it.
        self.hearing = YAMNet() if dims.hears_with_yamnet else None
        width = EMBEDDING_WIDTH if self.hearing is not None else None
        self.events = EventHead(dims, width) if dims.event_classes else None
        self.decoder: DiffusionDecoder | ARDecoder
        if dims.kind == "dac":
            self.decoder = DiffusionDecoder(dims)
        else:
            self.decoder = ARDecoder(dims, bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- audio -----------------------------------------------------------------------------------

    def fit_length(self, audio: torch.Tensor) -> torch.Tensor:
        """Crop or zero-pad (batch, samples) to the model's window length."""
        target = self.dims.max_audio_samples
        if audio.shape[-1] >= target:
            return audio[..., :target]
        return torch.nn.functional.pad(audio, (0, target - audio.shape[-1]))

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, samples) waveform -> (batch, frames, encoder_width) features."""
        return self.encoder(self.frontend(audio))

    def event_inputs(
        self, features: torch.Tensor, audio: torch.Tensor | None, heard: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What the event head reads: the encoder's features, or YAMNet's embeddings of the audio
        (``heard``, when the caller has them already: an engine that hears each second once)."""
        if self.hearing is None:
            return features
        if heard is not None:
            return heard
        if audio is None:
            raise ValueError("this model's event head hears the waveform (event_features 'yamnet'): pass audio")
        return self.hearing(audio)

    @torch.no_grad()
    def detect_events(
        self, features: torch.Tensor, audio: torch.Tensor | None = None, heard: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame probabilities (batch, frames, classes) and clip probabilities (batch, classes) of
        ``dims.event_classes``, from encoder features (and the waveform, or its YAMNet embeddings,
        for a YAMNet head)."""
        if self.events is None:
            raise ValueError("this model has no event detection head (dims.event_classes is empty)")
        logits = self.events(self.event_inputs(features, audio, heard))
        frames = torch.sigmoid(logits.float())
        return frames, EventHead.pool(frames)

    # -- text ------------------------------------------------------------------------------------

    def caption_tokens(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-length token targets and per-token loss weights for a batch of captions.

        DAC: caption + [EOS] repeated to the end (the decoder learns where a caption stops
        without a length predictor); AR: caption + [EOS], then [PAD] (ignored by the loss).
        """
        length = self.dims.max_caption_tokens
        fill = self.eos_id if self.dims.kind == "dac" else self.pad_id
        tokens = torch.full((len(captions), length), fill, dtype=torch.long)
        weights = torch.zeros((len(captions), length))
        for row, caption in enumerate(captions):
            ids = encode_caption(self.tokenizer, caption)[: length - 1] + [self.eos_id]
            tokens[row, : len(ids)] = torch.tensor(ids)
            weights[row, : len(ids)] = 1.0
            # Trailing [EOS] padding still teaches where captions stop, at a lower weight so that
            # the easy padding positions do not drown out the content words.
            weights[row, len(ids) :] = 0.1
        return tokens, weights

    # -- training --------------------------------------------------------------------------------

    def loss(self, audio: torch.Tensor, captions: Sequence[str], **kwargs) -> dict[str, torch.Tensor]:
        tokens, weights = self.caption_tokens(captions)
        tokens, weights = tokens.to(audio.device), weights.to(audio.device)
        features = self.encode_audio(audio)
        if isinstance(self.decoder, DiffusionDecoder):
            if self.dims.event_memory:
                kwargs["events"] = self.detect_events(features, self.fit_length(audio))[0]
            losses = self.decoder.loss(tokens, features, weights, **kwargs)
        else:
            losses = self.decoder.loss(tokens, features)
        return {name: value for name, value in vars(losses).items()}

    # -- inference -------------------------------------------------------------------------------

    def generate(
        self, audio: torch.Tensor | np.ndarray, options: DecodingOptions | None = None
    ) -> list[list[Candidate]]:
        """Captions for a batch of waveforms (batch, samples): per clip, candidates best first
        (``edge_dac.model.decoding.decode`` with the model's own modules)."""
        return decode(self, audio, options)
