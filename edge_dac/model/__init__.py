"""The reusable captioning model, shared by training, export, evaluation and the daemon."""

from edge_dac.model.captioner import Captioner
from edge_dac.model.checkpoint import load_captioner, save_captioner
from edge_dac.model.decoding import Candidate, DecodingOptions, decode
from edge_dac.model.dims import ModelDims
from edge_dac.model.tokenizer import load_tokenizer, normalize_caption, train_tokenizer

__all__ = [
    "Candidate",
    "Captioner",
    "DecodingOptions",
    "ModelDims",
    "decode",
    "load_captioner",
    "load_tokenizer",
    "normalize_caption",
    "save_captioner",
    "train_tokenizer",
]
