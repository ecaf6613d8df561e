"""Write ``edge_dac/caption_pairs.txt``: every pair of adjacent words the corpus's caption writer
uses, read by ``CaptionPairs`` to find captions where two wordings run into each other ("a tree
crashes down traffic past", "rain patters on a windshield chainsaw overhead": no caption of the
corpus has "down traffic" or "windshield chainsaw"); and ``edge_dac/caption_triples.txt.gz``, every
run of three words, read by ``CaptionTriples`` to find a clause no caption writes ("a helicopter is
whines").

The captions depend only on the scene plan (which classes and labels, when, how often, how loud),
never on the audio itself, so scenes are planned by the real mixer over train-split rows (never
val or test) with stand-in sources of each recording's catalog length: 100,000 scenes in ~4
minutes, no fetched audio needed. Re-run it after editing ``lexicon.yaml`` or the caption
templates (tests/test_corpus.py fails until then):

  python scripts/caption_pairs.py    # --scenes 100000 --out edge_dac/caption_pairs.txt --triples-out ...
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_dac.const import CAPTION_PAIRS_PATH, CAPTION_TRIPLES_PATH  # noqa: E402
from edge_dac.data.catalog import CatalogRow, load_catalog  # noqa: E402
from edge_dac.data.mixer import SceneMixer, Source  # noqa: E402
from edge_dac.lexicon import caption_words  # noqa: E402

HEADER = (
    "# Adjacent word {name} of the corpus's captions (<s> and </s>: a caption's start and end), from\n"
    "# {scenes} train-split scene plans; written by scripts/caption_pairs.py, read by edge_dac.lexicon.\n"
)


class PlanOnlyBank:
    """Stand-in sources: a recording of its catalog length at a constant level (the caption writer
    reads events' times and levels, which this keeps; mixing silence-trimmed real audio would
    shorten some events a little, which changes no word pair the writer can produce)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate

    def get(self, row: CatalogRow) -> Source:
        seconds = min(max(row.duration_s, 0.3), 30.0)
        return Source(audio=np.full(int(seconds * self.sample_rate), 1e-3, dtype=np.float32), gain_db=0.0)


Ngrams = set[tuple[str, ...]]


def scene_ngrams(scenes: int, split: str = "train", first_seed: int = 0) -> tuple[Ngrams, Ngrams]:
    """The word pairs and word triples of the captions of ``scenes`` planned scenes of ``split``."""
    mixer = SceneMixer(load_catalog(), "/nonexistent", split=split)
    mixer.bank = PlanOnlyBank(mixer.config.sample_rate)
    pairs: Ngrams = set()
    triples: Ngrams = set()
    for seed in tqdm(range(first_seed, first_seed + scenes), desc=f"{split} scene plans", unit="scene"):
        for caption in mixer.mix(seed).captions:
            words = ["<s>", *caption_words(caption), "</s>"]
            pairs.update(zip(words, words[1:], strict=False))
            triples.update(zip(words, words[1:], words[2:], strict=False))
    return pairs, triples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=CAPTION_PAIRS_PATH)
    parser.add_argument("--triples-out", type=Path, default=CAPTION_TRIPLES_PATH)
    args = parser.parse_args()
    pairs, triples = scene_ngrams(args.scenes)
    for path, ngrams, name in ((args.out, pairs, "pairs"), (args.triples_out, triples, "triples")):
        text = HEADER.format(scenes=args.scenes, name=name) + "".join(" ".join(g) + "\n" for g in sorted(ngrams))
        data = text.encode("utf-8")
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
        print(f"{len(ngrams)} word {name} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
