"""Write ``edge_dac/caption_pairs.txt``: every pair of adjacent words the corpus's caption writer
uses, read by ``Lexicon.run_on_pairs`` to find captions where two wordings run into each other
("a tree crashes down traffic past", "rain patters on a windshield chainsaw overhead": no caption
of the corpus has "down traffic" or "windshield chainsaw").

The captions depend only on the scene plan (which classes and labels, when, how often, how loud),
never on the audio itself, so scenes are planned by the real mixer over train-split rows (never
val or test) with stand-in sources of each recording's catalog length: 100,000 scenes in ~4
minutes, no fetched audio needed. Re-run it after editing ``lexicon.yaml`` or the caption
templates (tests/test_corpus.py fails until then):

  python scripts/caption_pairs.py            # --scenes 100000 --out edge_dac/caption_pairs.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_dac.const import CAPTION_PAIRS_PATH  # noqa: E402
from edge_dac.data.catalog import CatalogRow, load_catalog  # noqa: E402
from edge_dac.data.mixer import SceneMixer, Source  # noqa: E402
from edge_dac.lexicon import caption_words  # noqa: E402

HEADER = (
    "# Adjacent word pairs of the corpus's captions (<s> and </s>: a caption's start and end), from\n"
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


def scene_pairs(scenes: int, split: str = "train", first_seed: int = 0) -> set[tuple[str, str]]:
    """The word pairs of the captions of ``scenes`` planned scenes of ``split``."""
    mixer = SceneMixer(load_catalog(), "/nonexistent", split=split)
    mixer.bank = PlanOnlyBank(mixer.config.sample_rate)
    pairs: set[tuple[str, str]] = set()
    for seed in tqdm(range(first_seed, first_seed + scenes), desc=f"{split} scene plans", unit="scene"):
        for caption in mixer.mix(seed).captions:
            words = ["<s>", *caption_words(caption), "</s>"]
            pairs.update(zip(words, words[1:], strict=False))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=CAPTION_PAIRS_PATH)
    args = parser.parse_args()
    pairs = scene_pairs(args.scenes)
    body = "".join(f"{a} {b}\n" for a, b in sorted(pairs))
    args.out.write_text(HEADER.format(scenes=args.scenes) + body)
    print(f"{len(pairs)} word pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
