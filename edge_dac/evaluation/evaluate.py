"""``edge-dac eval``: caption every clip of a manifest, score the captions, time the model, write a report.

The pieces are reusable (``bench/dac_vs_ar.py`` is built from them):

- ``caption_items`` / ``caption_windows``: K candidate captions per clip, in batches;
- ``score_clips``: every metric of ``evaluate_captions`` plus event-F1 against the manifest's events;
- ``step_sweep``: quality and speed of a DAC model at 1, 2, 4, 8, 16 denoising steps on a subset;
- ``evaluate``: all of the above for one model and manifest, written to a folder as
  ``metrics.json``, ``captions.jsonl``, ``report.md`` and PNG plots.

Each clip is captioned from its first window (the model's window length, zero-padded when
shorter); corpus scenes are exactly one window long.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from tqdm import tqdm

from edge_dac import __version__
from edge_dac.data.datasets import CaptionItem, load_item_audio, load_manifest
from edge_dac.engines import CaptionEngine, load_engine
from edge_dac.errors import EdgeDacError
from edge_dac.evaluation.embedder import SentenceEmbedder
from edge_dac.evaluation.events import event_f1
from edge_dac.evaluation.metrics import evaluate_captions
from edge_dac.evaluation.speed import CaptionFn, SpeedResult, measure_speed
from edge_dac.lexicon import Lexicon, load_lexicon
from edge_dac.model.decoding import Candidate, DecodingOptions

SWEEP_STEPS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class EvalOptions:
    """Everything ``edge-dac eval`` can be told; the defaults are the daemon's decoding settings."""

    steps: int = 6
    candidates: int = 5
    beam: int = 1  # AR only: 1 = greedy (a beam of K is used when K > 1)
    seed: int = 0
    batch_size: int = 32
    limit: int | None = None  # first N clips of the (split of the) manifest
    split: str | None = None  # only clips of this split; None = all
    audio_root: str | None = None
    skip_bad: bool = False
    backend: str = "eager"
    sbert: bool = True
    meteor: bool = True
    speed: bool = True
    speed_seconds: float = 2.0  # timed per speed setting (at least two calls each)
    speed_batch_sizes: tuple[int, ...] = (1, 32)
    sweep: bool | None = None  # None: on for DAC, off for AR (it has no denoising steps)
    sweep_steps: tuple[int, ...] = SWEEP_STEPS
    sweep_clips: int = 50
    report_samples: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "candidates", "beam", "batch_size", "sweep_clips"):
            if getattr(self, name) < 1:
                raise EdgeDacError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise EdgeDacError(f"--limit must be at least 1, got {self.limit}")
        if self.speed_seconds <= 0:
            raise EdgeDacError(f"--speed-seconds must be positive, got {self.speed_seconds:g}")
        if not self.sweep_steps or min(self.sweep_steps) < 1:
            raise EdgeDacError(f"sweep steps must be positive integers, got {self.sweep_steps}")


def decoding_options(kind: str, steps: int, candidates: int, beam: int = 1, seed: int | None = 0) -> DecodingOptions:
    """DAC: K samples of ``steps`` steps; AR: greedy for one candidate, else a beam at least K wide."""
    beam_size = max(beam, candidates) if kind == "ar" else 1
    return DecodingOptions(steps=steps, candidates=candidates, beam_size=beam_size, seed=seed)


def one_thread_engine(engine: CaptionEngine, model_dir: Path) -> CaptionEngine:
    """The engine to time on one thread: eager obeys ``torch.set_num_threads``, a compiled backend
    (ONNX Runtime sessions) fixes its threads when it loads, so it is loaded again with one."""
    if engine.backend == "eager":
        return engine
    previous = torch.get_num_threads()
    try:
        return load_engine(model_dir, backend=engine.backend, threads=1)
    finally:
        torch.set_num_threads(previous)  # load_engine(threads=...) sets torch's global count


def decode_runner(engine: CaptionEngine) -> object | None:
    """The engine's step runner for timing DAC decoding alone; None for AR (eager decoder)."""
    return getattr(engine, "runner", None) if engine.captioner.dims.kind == "dac" else None


def caption_function(engine: CaptionEngine, options: DecodingOptions) -> CaptionFn:
    """(batch, samples) windows -> ranked candidates per window, on the engine's backend.

    The eager backend runs ``Captioner.generate`` with the full options (beam width, seed); other
    backends take steps and candidates through the ``CaptionEngine`` interface.
    """
    if engine.backend == "eager":
        return lambda windows: engine.captioner.generate(windows, options)
    return lambda windows: engine.caption(windows, steps=options.steps, candidates=options.candidates)


# --- audio and captioning ---------------------------------------------------------------------------


def fit_window(audio: np.ndarray, samples: int) -> np.ndarray:
    """The first ``samples`` samples of ``audio``, zero-padded when it is shorter."""
    window = np.zeros(samples, dtype=np.float32)
    kept = min(samples, audio.size)
    window[:kept] = audio[:kept]
    return window


def load_windows(
    items: Sequence[CaptionItem], sample_rate: int, window_samples: int, batch_size: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Batches of (batch, window_samples) audio and how many of its clips were longer than a window.

    The next batch is read in a background thread while the caller captions this one (decoding
    FLAC releases the GIL, so reading costs almost no captioning time).
    """

    def read(chunk: Sequence[CaptionItem]) -> tuple[np.ndarray, int]:
        audio = [load_item_audio(item, sample_rate) for item in chunk]
        longer = sum(a.size > window_samples for a in audio)
        return np.stack([fit_window(a, window_samples) for a in audio]), longer

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, chunks[0])
        for index in range(len(chunks)):
            batch = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(read, chunks[index + 1])
            yield batch


@dataclass
class CaptionedClips:
    predictions: list[list[Candidate]]  # per clip, best first
    windows: np.ndarray  # the first ``keep`` clips' audio windows, for timing and the step sweep
    longer_than_window: int  # clips of which only the first window was captioned


def caption_items(
    caption_fn: CaptionFn,
    items: Sequence[CaptionItem],
    sample_rate: int,
    window_samples: int,
    batch_size: int = 32,
    keep: int = 0,
    progress: bool = False,
) -> CaptionedClips:
    """Caption every item (read from disk batch by batch), keeping the first ``keep`` windows in memory."""
    predictions: list[list[Candidate]] = []
    kept: list[np.ndarray] = []
    longer = 0
    batches = load_windows(items, sample_rate, window_samples, batch_size)
    total = -(-len(items) // batch_size)
    for batch, batch_longer in tqdm(batches, total=total, desc="captioning", unit="batch", disable=not progress):
        predictions += caption_fn(batch)
        longer += batch_longer
        room = keep - sum(len(k) for k in kept)
        if room > 0:
            kept.append(batch[:room])
    windows = np.concatenate(kept) if kept else np.zeros((0, window_samples), dtype=np.float32)
    return CaptionedClips(predictions, windows, longer)


def caption_windows(caption_fn: CaptionFn, windows: np.ndarray, batch_size: int = 32) -> list[list[Candidate]]:
    """Caption windows already in memory, ``batch_size`` at a time."""
    predictions: list[list[Candidate]] = []
    for start in range(0, len(windows), batch_size):
        predictions += caption_fn(windows[start : start + batch_size])
    return predictions


# --- scoring ----------------------------------------------------------------------------------------


def true_event_labels(item: CaptionItem, lexicon: Lexicon) -> set[str] | None:
    """The event classes in a clip, named as ``Lexicon.labels_in_caption`` names them; None without events.

    Manifest events carry a catalog ``label`` ("footstep on gravel") and its ``class``
    ("footsteps"); captions are read back to classes, so classes are what is compared.
    """
    if item.events is None:
        return None
    classes = set()
    for event in item.events:
        name = event.get("class") or event.get("label")
        if not name:
            raise EdgeDacError(f"clip {item.id}: an event has neither 'class' nor 'label'; fix the manifest")
        if name not in lexicon.entries:
            # A class the lexicon cannot read from captions stays as it is, and counts as missed.
            with contextlib.suppress(KeyError):
                name = lexicon.event_class(name)
        classes.add(name)
    return classes


def event_metrics(best_captions: Sequence[str], items: Sequence[CaptionItem], lexicon: Lexicon) -> dict:
    """Event-F1 (micro and macro) of the best captions over the clips that list their events."""
    pairs = []
    for caption, item in zip(best_captions, items, strict=True):
        truth = true_event_labels(item, lexicon)
        if truth is not None:
            pairs.append((lexicon.labels_in_caption(caption), truth))
    if not pairs:
        return {}
    scores = event_f1([predicted for predicted, _ in pairs], [truth for _, truth in pairs])
    return {**{f"event_{key}": value for key, value in scores.items()}, "event_n_clips": len(pairs)}


def score_clips(
    predictions: Sequence[Sequence[Candidate]],
    items: Sequence[CaptionItem],
    lexicon: Lexicon | None = None,
    sbert: bool = True,
    meteor: bool = True,
    embedder: SentenceEmbedder | None = None,
    progress: bool = False,
) -> dict[str, float | int | None]:
    """Quality of the best candidate, diversity of all, and event-F1 where the items list events."""
    lexicon = lexicon or load_lexicon()
    captions = [[candidate.caption for candidate in clip] for clip in predictions]
    references = [item.captions for item in items]
    metrics = evaluate_captions(
        captions, references, sbert=sbert, meteor=meteor, embedder=embedder, progress=progress
    )
    metrics.update(event_metrics([clip[0] for clip in captions], items, lexicon))
    return metrics


def speed_metrics(results: Sequence[SpeedResult]) -> dict[str, float]:
    """Flat keys for metrics.json: ``aps_pipeline_b1``, ``tps_decode_b32``, ..."""
    flat = {}
    for result in results:
        flat[f"aps_{result.stage}_b{result.batch_size}"] = round(result.aps, 3)
        flat[f"tps_{result.stage}_b{result.batch_size}"] = round(result.tps, 2)
    return flat


class CachedEmbedder(SentenceEmbedder):
    """A ``SentenceEmbedder`` that embeds each distinct sentence once: the steps sweep and the DAC/AR
    bench score many caption sets against the same references."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, sentences: Sequence[str], progress: bool = False) -> np.ndarray:
        missing = [s for s in dict.fromkeys(sentences) if s not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, super().encode(missing, progress=progress), strict=True))
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[s] for s in sentences])


# --- the denoising-steps sweep -----------------------------------------------------------------------


def step_sweep(
    engine: CaptionEngine,
    windows: np.ndarray,
    items: Sequence[CaptionItem],
    base: DecodingOptions,
    steps: Sequence[int] = SWEEP_STEPS,
    batch_size: int = 32,
    sbert: bool = True,
    embedder: SentenceEmbedder | None = None,
    speed_seconds: float = 1.0,
    lexicon: Lexicon | None = None,
    progress: bool = False,
    speed_engine: CaptionEngine | None = None,
) -> list[dict]:
    """Event-F1, SBERT, CIDEr-D, BLEU-4 and batch-1 speed (1 thread) at each number of denoising steps.

    METEOR is left out here: its Java round trips would cost more than the captioning.
    ``speed_engine`` is timed (default ``engine``; see ``one_thread_engine``).
    """
    speed_engine = speed_engine or engine
    lexicon = lexicon or load_lexicon()
    rows = []
    for count in tqdm(steps, desc="steps sweep", unit="setting", disable=not progress):
        options = DecodingOptions(
            steps=count, candidates=base.candidates, beam_size=base.beam_size, seed=base.seed, rank=base.rank
        )
        caption_fn = caption_function(engine, options)
        predictions = caption_windows(caption_fn, windows, batch_size)
        metrics = score_clips(predictions, items, lexicon, sbert=sbert, meteor=False, embedder=embedder)
        speed = measure_speed(
            speed_engine.captioner, windows, options, batch_sizes=(1,), stages=("pipeline",),
            seconds=speed_seconds, caption_fn=caption_function(speed_engine, options),
            warm_up=speed_engine.backend != "eager",
        )[0]
        rows.append(
            {
                "steps": count,
                "event_f1": metrics.get("event_f1"),
                "sbert_max": metrics.get("sbert_max"),
                "cider_d": metrics["cider_d"],
                "bleu_4": metrics["bleu_4"],
                "aps_pipeline_b1": round(speed.aps, 3),
                "tps_pipeline_b1": round(speed.tps, 2),
            }
        )
    return rows


# --- the whole evaluation ------------------------------------------------------------------------------


def _candidate_record(candidate: Candidate) -> dict:
    # A caption with no tokens has score -inf, which strict JSON cannot hold.
    score = round(candidate.score, 4) if math.isfinite(candidate.score) else None
    return {"caption": candidate.caption, "score": score}


class Stopwatch:
    """Wall and CPU seconds per stage. CPU seconds (this process, all threads) say more than wall
    time on a shared machine; METEOR's Java child shows in wall time only."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._start = (time.perf_counter(), time.process_time())

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.times[f"{name}_s"] = round(time.perf_counter() - wall, 2)
        self.times[f"{name}_cpu_s"] = round(time.process_time() - cpu, 2)

    def total(self) -> dict[str, float]:
        wall, cpu = self._start
        total = {"total_s": round(time.perf_counter() - wall, 2), "total_cpu_s": round(time.process_time() - cpu, 2)}
        return {**self.times, **total}


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


def model_summary(engine: CaptionEngine, model_dir: Path) -> dict:
    captioner = engine.captioner
    config = json.loads((model_dir / "config.json").read_text())
    return {
        "path": str(model_dir),
        "id": engine.model_id,
        "kind": captioner.dims.kind,
        "parameters": sum(p.numel() for p in captioner.parameters()),
        "dims": captioner.dims.to_dict(),
        "metadata": config.get("metadata", {}),
    }


def environment() -> dict:
    return {
        "edge_dac": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def evaluate(
    model: str | Path | None,
    data: str | Path,
    out_dir: str | Path,
    options: EvalOptions | None = None,
    log: Callable[[str], None] = logger.info,
) -> EvalResult:
    """Caption, score, time and report one model on one manifest; files go to ``out_dir``."""
    from edge_dac.const import default_model_dir
    from edge_dac.evaluation.plots import plot_speed, plot_steps
    from edge_dac.evaluation.report import render_report, write_jsonl

    options = options or EvalOptions()
    clock = Stopwatch()
    out_dir = Path(out_dir)
    model_dir = Path(model) if model else default_model_dir()

    with clock.stage("load"):
        engine = load_engine(model_dir, backend=options.backend)
        captioner = engine.captioner
        manifest = load_manifest(data, audio_root=options.audio_root, skip_bad=options.skip_bad)
        items = select_items(manifest.items, options.split, options.limit, str(manifest.path))
        _prepare_out_dir(out_dir)
        lexicon = load_lexicon()
    kind = captioner.dims.kind
    decoding = decoding_options(kind, options.steps, options.candidates, options.beam, options.seed)
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
    if sweep:
        subset = min(options.sweep_clips, len(items))
        log(f"steps sweep {list(options.sweep_steps)} on the first {subset} clips")
        with clock.stage("sweep"):
            sweep_rows = step_sweep(
                engine, captioned.windows[:subset], items[:subset], decoding, options.sweep_steps,
                batch_size=options.batch_size, sbert=options.sbert, embedder=embedder,
                speed_seconds=options.speed_seconds / 2, lexicon=lexicon, progress=options.progress,
                speed_engine=timed,
            )

    # 5. Write everything.
    clips = []
    for item, candidates in zip(items, captioned.predictions, strict=True):
        truth = true_event_labels(item, lexicon)
        clips.append(
            {
                "id": item.id,
                "audio": str(item.audio),
                "references": item.captions,
                "candidates": [_candidate_record(candidate) for candidate in candidates],
                "events": sorted(truth) if truth is not None else None,
                "predicted_events": sorted(lexicon.labels_in_caption(candidates[0].caption)),
            }
        )
    result = {
        "model": model_summary(engine, model_dir),
        "data": {
            "manifest": str(manifest.path),
            "format": manifest.format,
            "split": options.split,
            "n_clips": len(items),
            "skipped_unreadable": manifest.skipped,
            "longer_than_window": captioned.longer_than_window,
        },
        "decoding": {**asdict(decoding), "backend": engine.backend},
        "metrics": metrics,
        "speed": {
            "threads": 1,
            "seconds_per_configuration": options.speed_seconds,
            "results": [r.to_dict() for r in speed],
        },
        "sweep": {"n_clips": min(options.sweep_clips, len(items)) if sweep else 0, "rows": sweep_rows},
        "timing": clock.total(),
        "environment": environment(),
    }
    files = [out_dir / "metrics.json", out_dir / "captions.jsonl"]
    files[0].write_text(json.dumps(result, indent=2) + "\n")
    write_jsonl(files[1], clips)
    if speed:
        files.append(plot_speed(result["speed"]["results"], out_dir / "speed.png"))
    if sweep_rows:
        files.append(plot_steps(sweep_rows, out_dir / "steps.png"))
    report = out_dir / "report.md"
    report.write_text(render_report(result, clips, samples=options.report_samples, plots=[f.name for f in files[2:]]))
    files.append(report)
    return EvalResult(result, clips, out_dir, files)
