"""``edge-dac eval``: caption every clip of a manifest, score the captions, time the model, write a report.

``evaluate`` runs the steps in order; each lives in a module of its own (``bench/dac_vs_ar.py`` is
built from the same pieces):

- ``options``: ``EvalOptions``, what the command can be told;
- ``decoding``: the decoding options of each model kind and the caption call of each backend;
- ``prefetch`` / ``captioning``: clips read a batch ahead, K candidate captions per clip;
- ``scoring``: every metric of ``evaluate_captions`` plus event-F1 against the manifest's events
  (``embedding_cache``: SBERT embeds each distinct sentence once);
- ``timing``: the engine timed on one thread, flat speed keys;
- ``sweep``: quality and speed of a DAC model at 1, 2, 4, 8, 16 denoising steps on a subset;
- ``results``: ``metrics.json``, ``captions.jsonl``, ``report.md`` and PNG plots.

Each clip is captioned from its first window (the model's window length, zero-padded when
shorter); corpus scenes are exactly one window long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from edge_dac.data.datasets import CaptionItem, load_manifest
from edge_dac.engines import load_engine
from edge_dac.errors import EdgeDacError
from edge_dac.evaluation.captioning import CaptionedClips, caption_items, caption_windows
from edge_dac.evaluation.decoding import caption_function, decoding_options
from edge_dac.evaluation.embedding_cache import CachedEmbedder
from edge_dac.evaluation.options import SWEEP_STEPS, EvalOptions
from edge_dac.evaluation.prefetch import fit_window, load_windows
from edge_dac.evaluation.results import (
    Stopwatch,
    clip_records,
    environment,
    metrics_document,
    model_summary,
    write_results,
)
from edge_dac.evaluation.scoring import event_metrics, score_clips, true_event_labels
from edge_dac.evaluation.speed import SpeedResult, measure_speed
from edge_dac.evaluation.sweep import step_sweep
from edge_dac.evaluation.timing import decode_runner, one_thread_engine, speed_metrics
from edge_dac.lexicon import load_lexicon

# The pieces, importable from here as before the split (tests, bench/dac_vs_ar.py).
__all__ = [
    "SWEEP_STEPS",
    "CachedEmbedder",
    "CaptionedClips",
    "EvalOptions",
    "EvalResult",
    "Stopwatch",
    "caption_function",
    "caption_items",
    "caption_windows",
    "decode_runner",
    "decoding_options",
    "environment",
    "evaluate",
    "event_metrics",
    "fit_window",
    "load_windows",
    "model_summary",
    "one_thread_engine",
    "score_clips",
    "select_items",
    "speed_metrics",
    "step_sweep",
    "true_event_labels",
]


@dataclass
class EvalResult:
    metrics: dict  # the content of metrics.json
    clips: list[dict]  # the lines of captions.jsonl
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def select_items(items: Sequence[CaptionItem], split: str | None, limit: int | None, source: str) -> list[CaptionItem]:
    if split is not None:
        chosen = [item for item in items if item.split == split]
        if not chosen:
            found = sorted({str(item.split) for item in items})
            raise EdgeDacError(f"{source}: no clips in split {split!r} (splits there: {', '.join(found)}); fix --split")
    else:
        chosen = list(items)
    return chosen[:limit] if limit else chosen


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeDacError(f"--out {out_dir}: exists and is not a folder; pass another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EdgeDacError(f"--out {out_dir}: cannot create the output folder ({error.strerror or error})") from None


def evaluate(
    model: str | Path | None,
    data: str | Path,
    out_dir: str | Path,
    options: EvalOptions | None = None,
    log: Callable[[str], None] = logger.info,
) -> EvalResult:
    """Caption, score, time and report one model on one manifest; files go to ``out_dir``."""
    from edge_dac.const import default_model_dir

    options = options or EvalOptions()
    clock = Stopwatch()
    out_dir = Path(out_dir)
    model_dir = Path(model) if model else default_model_dir()

    with clock.stage("load"):
        engine = load_engine(model_dir, backend=options.backend, precision=options.precision)
        captioner = engine.captioner
        manifest = load_manifest(data, audio_root=options.audio_root, skip_bad=options.skip_bad)
        items = select_items(manifest.items, options.split, options.limit, str(manifest.path))
        _prepare_out_dir(out_dir)
        lexicon = load_lexicon()
    kind = captioner.dims.kind
    decoding = decoding_options(
        kind, options.steps, options.candidates, options.beam, options.seed, options.repair, options.match_events,
        options.event_guidance,
    )
    if kind == "dac" and options.beam > 1:
        logger.warning("--beam applies to AR models only; this DAC model draws --candidates samples instead")
    sweep = options.sweep if options.sweep is not None else kind == "dac"
    if sweep and kind != "dac":
        logger.warning("the steps sweep needs a DAC model (AR has no denoising steps); skipping it")
        sweep = False
    log(f"evaluating {engine.model_id} ({kind}) on {len(items)} clips of {manifest.path}")

    # 1. Caption every clip.
    keep = max(options.sweep_clips if sweep else 0, max(options.speed_batch_sizes) if options.speed else 0)
    with clock.stage("caption"):
        captioned = caption_items(
            caption_function(engine, decoding), items, captioner.dims.sample_rate, captioner.dims.max_audio_samples,
            options.batch_size, keep=keep, progress=options.progress,
        )
    if captioned.longer_than_window:
        logger.warning(
            f"{captioned.longer_than_window} clips are longer than the model's "
            f"{captioner.dims.max_audio_seconds:g} s window; only their first window was captioned"
        )

    # 2. Score them.
    embedder = CachedEmbedder() if options.sbert else None
    with clock.stage("metrics"):
        metrics = score_clips(
            captioned.predictions, items, lexicon, sbert=options.sbert, meteor=options.meteor,
            embedder=embedder, progress=options.progress,
        )

    # 3. Time the model on one thread.
    speed: list[SpeedResult] = []
    timed = engine
    if options.speed or sweep:
        timed = one_thread_engine(engine, model_dir)
    if options.speed:
        log(f"timing on 1 thread at batch {', '.join(map(str, options.speed_batch_sizes))} ({timed.backend})")
        with clock.stage("speed"):
            speed = measure_speed(
                timed.captioner, captioned.windows, decoding, batch_sizes=options.speed_batch_sizes,
                seconds=options.speed_seconds, caption_fn=caption_function(timed, decoding),
                warm_up=timed.backend != "eager", runner=decode_runner(timed),
            )
        metrics.update(speed_metrics(speed))

    # 4. Quality and speed against the number of denoising steps, on a subset.
    sweep_rows: list[dict] = []
    subset = min(options.sweep_clips, len(items)) if sweep else 0
    if sweep:
        log(f"steps sweep {list(options.sweep_steps)} on the first {subset} clips")
        with clock.stage("sweep"):
            sweep_rows = step_sweep(
                engine, captioned.windows[:subset], items[:subset], decoding, options.sweep_steps,
                batch_size=options.batch_size, sbert=options.sbert, embedder=embedder,
                speed_seconds=options.speed_seconds / 2, lexicon=lexicon, progress=options.progress,
                speed_engine=timed,
            )

    # 5. Write everything.
    clips = clip_records(items, captioned.predictions, lexicon)
    result = metrics_document(
        engine=engine, model_dir=model_dir, manifest=manifest, split=options.split, n_clips=len(items),
        longer_than_window=captioned.longer_than_window, decoding=decoding, metrics=metrics, speed=speed,
        speed_seconds=options.speed_seconds, sweep_clips=subset, sweep_rows=sweep_rows, clock=clock,
    )
    files = write_results(out_dir, result, clips, options.report_samples)
    return EvalResult(result, clips, out_dir, files)
