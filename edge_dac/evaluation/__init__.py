"""Caption evaluation: quality against references, SBERT similarity, event-F1 and diversity.

Heavy libraries (torch, transformers, lexicalrichness, Java for METEOR) load only when used.
"""

from edge_dac.evaluation.diversity import diversity_metrics
from edge_dac.evaluation.embedder import SentenceEmbedder, sbert_similarity
from edge_dac.evaluation.events import event_f1
from edge_dac.evaluation.metrics import evaluate_captions
from edge_dac.evaluation.quality import Meteor, coco_metrics, normalize_for_scoring, tokenize_caption

__all__ = [
    "Meteor",
    "SentenceEmbedder",
    "coco_metrics",
    "diversity_metrics",
    "evaluate_captions",
    "event_f1",
    "normalize_for_scoring",
    "sbert_similarity",
    "tokenize_caption",
]
