"""Time the caption metrics of ``edge-dac eval`` on N synthetic clips x 5 references x K candidates.

    python bench/eval_metrics.py [--clips 1000] [--candidates 5]

Prints seconds per stage; the SBERT stage dominates on a CPU (6,000 sentences through MiniLM).
"""

from __future__ import annotations

import argparse
import random
import time

from edge_dac.evaluation.diversity import diversity_metrics
from edge_dac.evaluation.embedder import SentenceEmbedder, sbert_similarity
from edge_dac.evaluation.events import event_f1, labels_of_captions
from edge_dac.evaluation.quality import coco_metrics

SOURCES = ["a dog", "a man", "birds", "a car", "rain", "a child", "people", "an engine", "water", "a bell"]
ACTIONS = ["barks", "speaks", "chirp", "passes by", "falls", "laughs", "talk", "idles", "flows", "rings"]
PLACES = ["loudly", "in the distance", "nearby", "while music plays", "on a busy street", "repeatedly"]


def caption(rng: random.Random) -> str:
    first = f"{rng.choice(SOURCES)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}"
    return f"{first}, and {rng.choice(SOURCES)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    predictions = [[caption(rng) for _ in range(args.candidates)] for _ in range(args.clips)]
    references = [[caption(rng) for _ in range(5)] for _ in range(args.clips)]
    best = [clip[0] for clip in predictions]
    labels_of = lambda text: {word for word in ("dog", "car", "rain", "bell", "birds") if word in text}  # noqa: E731

    def timed(name, work):
        # CPU seconds of this process (all its threads) say more than wall time on a shared machine;
        # METEOR's work happens in its Java child and shows in wall time only.
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        print(f"{name:<28} {wall:6.1f} s wall {cpu:6.1f} s CPU")

    print(f"{args.clips} clips x 5 references x {args.candidates} candidates")
    timed("BLEU, ROUGE-L, CIDEr-D", lambda: coco_metrics(best, references, meteor=False))
    timed("... and METEOR (Java)", lambda: coco_metrics(best, references, meteor=True))
    embedder = SentenceEmbedder()
    timed("SBERT model load", lambda: embedder.encode(["warm up"]))
    timed("SBERT similarity", lambda: sbert_similarity(best, references, embedder=embedder))
    timed(
        "event-F1",
        lambda: event_f1(
            labels_of_captions(best, labels_of), [set().union(*labels_of_captions(r, labels_of)) for r in references]
        ),
    )
    timed("diversity", lambda: diversity_metrics(predictions))


if __name__ == "__main__":
    main()
