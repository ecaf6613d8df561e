"""Small real models for tests (random weights, real forward passes)."""

from __future__ import annotations

import torch

from edge_dac.model import Captioner, ModelDims, train_tokenizer

CAPTIONS = ["a dog barks while rain falls", "a man speaks then a door slams twice", "birds sing in the distance"]


def tiny_captioner(
    kind: str = "dac", seconds: float = 2.0, stem: str = "conv1d", wording_codes: int = 0, event_classes=(),
    chunk_seconds: float = 0.0, event_features: str = "encoder", event_hidden: int = 0, event_memory: bool = False,
) -> Captioner:
    """A small random-weight captioner; ``chunk_seconds``: a streaming encoder (its first block per chunk);
    ``event_features="yamnet"``: its event head on the shipped YAMNet weights; ``event_hidden``: the
    head's hidden layer; ``event_memory``: its denoiser also reads the head's frame probabilities."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer(CAPTIONS, vocab_size=80)
    dims = ModelDims(
        kind=kind, vocab_size=len(tokenizer), max_audio_seconds=seconds, encoder_width=64, decoder_width=64,
        encoder_layers=2, decoder_layers=2, encoder_heads=4, decoder_heads=4, max_caption_tokens=12,
        embedding_dim=16, encoder_stem=stem, encoder_channels=8, wording_codes=wording_codes,
        event_classes=tuple(event_classes), encoder_chunk_seconds=chunk_seconds,
        encoder_chunk_layers=1 if chunk_seconds else 0, event_features=event_features,
        event_hidden=event_hidden, event_memory=event_memory,
    )
    return Captioner(dims, tokenizer).eval()
