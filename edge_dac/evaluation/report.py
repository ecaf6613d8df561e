"""The readable side of ``edge-dac eval``: ``report.md`` and ``captions.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

QUALITY_ROWS = (
    ("bleu_1", "BLEU-1"),
    ("bleu_2", "BLEU-2"),
    ("bleu_3", "BLEU-3"),
    ("bleu_4", "BLEU-4"),
    ("meteor", "METEOR"),
    ("rouge_l", "ROUGE-L"),
    ("cider_d", "CIDEr-D"),
    ("sbert_max", "SBERT (closest reference)"),
    ("sbert_mean", "SBERT (mean over references)"),
    ("broken", "broken captions (share of best captions; lower is better)"),
    ("broken_all_candidates", "broken captions (share of all candidates)"),
    ("redundant", "redundant captions (one sound named twice; share of best captions)"),
    ("misfit", "misfit captions (a noun with another sound's verb; share of best captions)"),
)
EVENT_ROWS = (
    ("event_precision", "precision"),
    ("event_recall", "recall"),
    ("event_f1", "F1"),
    ("event_macro_precision", "macro precision"),
    ("event_macro_recall", "macro recall"),
    ("event_macro_f1", "macro F1"),
    ("event_n_labels", "labels seen"),
    ("event_n_clips", "clips with events"),
)
DIVERSITY_ROWS = (
    ("distinct_1", "Distinct-1 (within a clip's candidates)"),
    ("distinct_2", "Distinct-2 (within a clip's candidates)"),
    ("mtld", "MTLD (a clip's candidates)"),
    ("self_bleu", "self-BLEU (lower = more diverse)"),
    ("corpus_distinct_1", "Distinct-1 (best captions, whole set)"),
    ("corpus_distinct_2", "Distinct-2 (best captions, whole set)"),
    ("corpus_mtld", "MTLD (best captions, whole set)"),
    ("vocab_size", "vocabulary (best captions)"),
    ("vocab_size_all_candidates", "vocabulary (all candidates)"),
)


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: floats rounded, None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_table(metrics: dict, rows: Sequence[tuple[str, str]]) -> str | None:
    present = [(label, metrics[key]) for key, label in rows if key in metrics]
    return table(("metric", "value"), present) if present else None


def write_jsonl(path: str | Path, records: Sequence[dict]) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def render_report(result: dict, clips: Sequence[dict], samples: int = 10, plots: Sequence[str] = ()) -> str:
    """Markdown: set-up, quality, events, diversity, speed, steps sweep, sample clips, run time."""
    model, data, decoding, metrics = result["model"], result["data"], result["decoding"], result["metrics"]
    env = result["environment"]
    untrained = " **(untrained, random weights)**" if model["metadata"].get("untrained") else ""
    if model["kind"] == "dac":
        how = f"DAC, {decoding['steps']} denoising steps, K={decoding['candidates']} samples (seed {decoding['seed']})"
    elif decoding["beam_size"] > 1:
        how = f"AR, beam {decoding['beam_size']}, K={decoding['candidates']} candidates"
    else:
        how = "AR, greedy"
    if not decoding.get("repair", True):
        how += ", raw captions (no whole-prefix repair)"
    if decoding.get("event_guidance", 0) == 0:
        how += ", no event guidance"
    else:
        how += f", event guidance {decoding['event_guidance']:g}"
    if not decoding.get("match_events", True):
        how += ", ranked without the event head"
    out = [
        f"# Evaluation of {model['id']}",
        "",
        f"- Model: `{model['path']}`, {model['kind']}, {model['parameters'] / 1e6:.2f} M parameters{untrained}",
        f"- Data: `{data['manifest']}` ({data['format']}), {data['n_clips']} clips"
        + (f" of split {data['split']}" if data["split"] else "")
        + (f", {data['skipped_unreadable']} unreadable skipped" if data["skipped_unreadable"] else ""),
        f"- Decoding: {how}; backend {decoding['backend']} {decoding.get('precision', 'fp32')}",
        f"- Machine: {env['processor']}, {env['cpu_count']} CPUs; torch {env['torch']}, edge-dac {env['edge_dac']};"
        f" {env['date']}",
        "",
        "## Quality (best candidate against the references)",
        "",
        _metric_table(metrics, QUALITY_ROWS),
        "",
    ]
    events = _metric_table(metrics, EVENT_ROWS)
    out += ["## Event-F1 (lexicon classes named by the best caption against the clip's events)", ""]
    out += [events if events else "The manifest lists no events, so there is no event-F1.", ""]
    out += ["## Diversity", "", _metric_table(metrics, DIVERSITY_ROWS), ""]

    speed = result["speed"]["results"]
    if speed:
        out += [
            "## Speed (1 thread)",
            "",
            "APS = audios per second, TPS = generated tokens per second (all candidate rows, before repeats "
            "are collapsed). *pipeline*: waveform to ranked captions; *decode*: decoder alone on precomputed "
            "encoder output.",
            "",
            table(
                ("stage", "batch", "APS", "TPS", "ms per batch", "iterations"),
                [(r["stage"], r["batch_size"], r["aps"], r["tps"], r["ms_per_batch"], r["iterations"]) for r in speed],
            ),
            "",
        ]
        if "speed.png" in plots:
            out += ["![speed](speed.png)", ""]

    sweep = result["sweep"]
    if sweep["rows"]:
        out += [
            f"## Denoising steps (first {sweep['n_clips']} clips, K={decoding['candidates']})",
            "",
            table(
                ("steps", "event-F1", "SBERT", "CIDEr-D", "BLEU-4", "APS (batch 1)", "TPS (batch 1)"),
                [
                    (r["steps"], r["event_f1"], r["sbert_max"], r["cider_d"], r["bleu_4"],
                     r["aps_pipeline_b1"], r["tps_pipeline_b1"])
                    for r in sweep["rows"]
                ],
            ),
            "",
        ]
        if "steps.png" in plots:
            out += ["![quality and speed against denoising steps](steps.png)", ""]

    if samples and clips:
        out += [f"## Sample clips (first {min(samples, len(clips))} of {len(clips)}; all in captions.jsonl)", ""]
        for clip in clips[:samples]:
            out += [f"### {clip['id']}", ""]
            if clip["events"] is not None:
                out += [
                    f"events: {', '.join(clip['events']) or '(none)'}; "
                    f"named by the best caption: {', '.join(clip['predicted_events']) or '(none)'}",
                    "",
                ]
            out += ["references:", ""] + [f"- {ref}" for ref in clip["references"]] + [""]
            out += ["candidates (best first; in brackets the mean token log-probability):", ""]
            for rank, candidate in enumerate(clip["candidates"], 1):
                out.append(f"{rank}. {candidate['caption'] or '(empty)'} ({fmt(candidate['score'])})")
            out += [""]

    timing = result["timing"]
    stages = [key.removesuffix("_s") for key in timing if not key.endswith("_cpu_s")]
    out += [
        "## Run time (wall seconds, CPU seconds of this process in brackets)",
        "",
        ", ".join(f"{stage} {timing[stage + '_s']:.1f} s ({timing.get(stage + '_cpu_s', 0):.1f})" for stage in stages),
        "",
    ]
    return "\n".join(line for line in out if line is not None)
