"""PNG plots of ``edge-dac eval``: quality and speed against denoising steps, and speed per batch size;
of ``bench/dac_vs_ar.py``: quality against decoder time, every system and backend.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly: no pyplot global
state, no display needed, safe to call from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# Scores in [0, 1] share the left axis; CIDEr-D (0 to 10) gets its own so it does not flatten them.
QUALITY_CURVES = (("event_f1", "event-F1"), ("sbert_max", "SBERT"), ("bleu_4", "BLEU-4"))
CIDER_CURVE = ("cider_d", "CIDEr-D")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_steps(rows: Sequence[dict], path: str | Path) -> Path:
    """Left: quality metrics against denoising steps; right: batch-1 audios per second (1 thread)."""
    path = Path(path)
    steps = [row["steps"] for row in rows]
    figure = _figure(10, 4)
    quality, speed = figure.subplots(1, 2)
    lines = []
    for key, label in QUALITY_CURVES:
        values = [row.get(key) for row in rows]
        if all(value is None for value in values):
            continue  # e.g. no SBERT (--no-sbert) or no event lists in the manifest
        lines += quality.plot(steps, [float("nan") if v is None else v for v in values], marker="o", label=label)
    quality.set_title("quality")
    quality.set_ylabel("score (best candidate)")
    quality.set_ylim(0.0, 1.05)
    cider = [row.get(CIDER_CURVE[0]) for row in rows]
    if not all(value is None for value in cider):
        cider_axes = quality.twinx()
        lines += cider_axes.plot(
            steps, [float("nan") if v is None else v for v in cider], marker="s", linestyle="--",
            color="tab:gray", label=CIDER_CURVE[1],
        )
        cider_axes.set_ylabel("CIDEr-D")
        cider_axes.set_ylim(bottom=0.0)
    quality.legend(lines, [line.get_label() for line in lines], loc="best")
    speed.plot(steps, [row["aps_pipeline_b1"] for row in rows], marker="o", color="tab:red")
    speed.set_title("speed (whole pipeline, batch 1, 1 thread)")
    speed.set_ylabel("audios per second")
    for axes in (quality, speed):
        axes.set_xscale("log", base=2)
        axes.set_xticks(steps, [str(s) for s in steps])
        axes.set_xlabel("denoising steps")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_speed(results: Sequence[dict], path: str | Path) -> Path:
    """Audios per second of each stage at each batch size (bars), 1 thread."""
    path = Path(path)
    stages = sorted({r["stage"] for r in results}, key=lambda s: (s != "pipeline", s))
    batches = sorted({r["batch_size"] for r in results})
    figure = _figure(6, 4)
    axes = figure.subplots()
    width = 0.8 / max(len(stages), 1)
    for i, stage in enumerate(stages):
        by_batch = {r["batch_size"]: r["aps"] for r in results if r["stage"] == stage}
        x = [b + (i - (len(stages) - 1) / 2) * width for b in range(len(batches))]
        bars = axes.bar(x, [by_batch.get(b, 0.0) for b in batches], width, label=stage)
        axes.bar_label(bars, fmt="%.1f", fontsize=8)
    axes.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    axes.set_ylabel("audios per second")
    axes.set_title("speed, 1 thread")
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)
    return path


# ``bench/dac_vs_ar.py``: one marker shape per backend, one colour per family of systems.
BACKEND_MARKERS = {"eager": "o", "onnxruntime": "s", "torch-compile": "^", "tensorrt": "D"}
FAMILY_COLOURS = {"DAC K=1": "tab:blue", "DAC K=5": "tab:orange", "AR": "tab:red"}


def plot_quality_against_decode_time(
    points: Sequence[dict], path: str | Path, quality_label: str = "event-F1"
) -> Path:
    """Quality against decoder ms per window (log scale), one panel per batch size, 1 thread.

    ``points``: dicts with ``batch``, ``backend``, ``family`` (a key of ``FAMILY_COLOURS``),
    ``label`` (written beside the marker), ``order`` (DAC steps: the points of one family and
    backend are joined in this order), ``decoder_ms`` and ``quality`` (None: left out).
    """
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    path = Path(path)
    batches = sorted({p["batch"] for p in points})
    figure = _figure(6 * max(len(batches), 1), 4.5)
    panels = figure.subplots(1, max(len(batches), 1), squeeze=False)[0]
    for axes, batch in zip(panels, batches, strict=False):
        shown = [p for p in points if p["batch"] == batch and p["quality"] is not None and p["decoder_ms"]]
        groups: dict[tuple[str, str], list[dict]] = {}
        for point in shown:
            groups.setdefault((point["family"], point["backend"]), []).append(point)
        for (family, backend), group in groups.items():
            group.sort(key=lambda p: p["order"])
            axes.plot(
                [p["decoder_ms"] for p in group], [p["quality"] for p in group],
                marker=BACKEND_MARKERS.get(backend, "x"), color=FAMILY_COLOURS.get(family, "tab:gray"),
                linestyle="-" if family.startswith("DAC") else "none", label=f"{family}, {backend}",
            )
            for point in group:
                axes.annotate(point["label"], (point["decoder_ms"], point["quality"]), fontsize=7,
                              xytext=(3, 3), textcoords="offset points")
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("decoder ms per window (log scale)")
        axes.set_ylabel(f"{quality_label} (best candidate)")
        top = max((p["quality"] for p in shown), default=0.0)
        axes.set_ylim(0.0, top * 1.15 if top > 0 else 1.0)
        axes.set_title(f"batch {batch}, 1 thread")
        axes.grid(alpha=0.3)
        if groups:
            axes.legend(loc="best", fontsize=7)
    figure.suptitle(f"{quality_label} against decoder time (numbers beside DAC points: denoising steps)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_daemon_timeline(
    captions: Sequence[tuple[float, float, float]], drifts: Sequence[tuple[float, float]], path: str | Path
) -> Path:
    """``bench/daemon_latency.py`` over its run: per caption (minutes, latency ms window end ->
    subscriber, audio clock ahead of the window's arrival ms) on top; the clock's measured device
    drift (minutes, ppm) from the status heartbeats below."""
    path = Path(path)
    figure = _figure(10, 6)
    latency, drift = figure.subplots(2, 1, sharex=True)
    if captions:
        minutes, to_subscriber, ahead = zip(*captions, strict=True)
        latency.plot(minutes, to_subscriber, ".", markersize=3, label="window end -> subscriber")
        latency.plot(minutes, ahead, ".", markersize=3, label="audio clock ahead of the window's arrival")
    latency.set_ylabel("ms")
    latency.grid(alpha=0.3)
    latency.legend(loc="best", fontsize=8)
    if drifts:
        minutes, ppm = zip(*drifts, strict=True)
        drift.plot(minutes, ppm, "-", color="tab:green")
    drift.set_ylabel("measured device drift (ppm)")
    drift.set_xlabel("minutes since audio flowed")
    drift.grid(alpha=0.3)
    figure.suptitle("daemon latency and its audio clock over the run", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path
