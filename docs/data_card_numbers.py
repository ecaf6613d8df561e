"""Print the numbers of docs/data-card.md as Markdown, computed from the catalog and the lexicon.

    python docs/data_card_numbers.py [--config configs/corpus.yaml] [--examples]

``--examples`` also mixes a few test-split scenes from the fetched small package set and prints
three captions per template family (needs `edge-dac data fetch --small`).
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from edge_dac.data.build import load_corpus_config
from edge_dac.data.catalog import load_catalog
from edge_dac.data.mixer import SPLITS
from edge_dac.lexicon import load_lexicon


def usable(row, lexicon, exclude_notes) -> bool:
    return lexicon.covers(row.class_name, row.label) and not any(n in row.notes for n in exclude_notes)


def role(row, lexicon) -> str:
    if row.kind == "speech":
        return "speech"
    entry = lexicon.entries[lexicon.event_class(row.class_name or row.label)]
    return "background" if entry.background and row.kind in ("ambience", "music") else "foreground"


def print_numbers(config_path: str | None) -> None:
    config = load_corpus_config(config_path)
    lexicon = load_lexicon()
    rows = load_catalog()
    used = [r for r in rows if usable(r, lexicon, config.scene.exclude_notes)]
    left_out = Counter((r.class_name or r.label) for r in rows if r.kind != "speech" and r not in used)

    print("## Corpus size (configs/corpus.yaml)\n")
    print("| split | clips | hours |\n|---|---:|---:|")
    for split in SPLITS:
        n = config.clips.get(split, 0)
        print(f"| {split} | {n} | {n * config.scene.seconds / 3600:.1f} |")
    total = sum(config.clips.values())
    print(f"| all | {total} | {total * config.scene.seconds / 3600:.1f} |\n")

    print("## Source recordings used, by role and split (hours in brackets)\n")
    print("| role | " + " | ".join(SPLITS) + " |\n|---|" + "---:|" * len(SPLITS))
    for r_name in ("foreground", "background", "speech"):
        cells = []
        for split in SPLITS:
            chosen = [r for r in used if r.split == split and role(r, lexicon) == r_name]
            cells.append(f"{len(chosen)} ({sum(r.duration_s for r in chosen) / 3600:.2f} h)")
        print(f"| {r_name} | " + " | ".join(cells) + " |")
    classes = {lexicon.event_class(r.class_name or r.label) for r in used}
    print(f"\n{len(classes)} event classes ({len(classes & set(lexicon.entries)) - 4} non-speech + 4 speech) "
          f"from {len({r.label for r in used})} catalog labels; {len(used)} of {len(rows)} catalog rows.\n")

    print("## Classes (recordings per split)\n")
    print("| class | category | role | train | val | test |\n|---|---|---|---:|---:|---:|")
    per_class: dict[str, Counter] = defaultdict(Counter)
    meta: dict[str, tuple[str, str]] = {}
    for r in used:
        key = lexicon.event_class(r.class_name or r.label)
        per_class[key][r.split] += 1
        meta.setdefault(key, (r.category, role(r, lexicon)))
    for key in sorted(per_class, key=lambda k: (meta[k][0], k)):
        c = per_class[key]
        print(f"| {key} | {meta[key][0]} | {meta[key][1]} | {c['train']} | {c['val']} | {c['test']} |")

    print("\n## Left out (non-speech recordings not captioned)\n")
    print(", ".join(f"{k or 'music playing'} ({n})" for k, n in sorted(left_out.items(), key=lambda kv: -kv[1])))

    print("\n## Licences of the source packages (usable recordings)\n")
    print("| package | licence(s) | recordings |\n|---|---|---:|")
    per_package: dict[str, Counter] = defaultdict(Counter)
    for r in used:
        per_package[r.package][r.license or "(not stated in the catalog)"] += 1
    for package in sorted(per_package):
        licences = ", ".join(sorted(per_package[package]))
        print(f"| {package} | {licences} | {sum(per_package[package].values())} |")
    by_licence = Counter(r.license or "(not stated in the catalog)" for r in used)
    print("\n| licence | recordings | share |\n|---|---:|---:|")
    for licence, n in by_licence.most_common():
        print(f"| {licence} | {n} | {100 * n / len(used):.1f}% |")


def print_examples() -> None:
    from edge_dac.const import default_cache_dir
    from edge_dac.data.captions import FAMILIES, _Writer
    from edge_dac.data.fetch import SMALL_PACKAGES
    from edge_dac.data.mixer import SceneConfig, SceneMixer

    rows = [r for r in load_catalog() if r.package in SMALL_PACKAGES]
    mixer = SceneMixer(rows, default_cache_dir(), SceneConfig(), "train")
    print("\n## Example captions per template family (train split of the small package set)\n")
    scenes = [mixer.mix(seed) for seed in (3, 14, 15)]
    for name, family in FAMILIES.items():
        print(f"- **{name}**")
        for scene in scenes:
            writer = _Writer(scene.placed, np.random.default_rng([scene.seed, 2]), mixer.config.seconds)
            print(f"  - {family(writer)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "corpus.yaml"))
    parser.add_argument("--examples", action="store_true")
    args = parser.parse_args()
    print_numbers(args.config)
    if args.examples:
        print_examples()
