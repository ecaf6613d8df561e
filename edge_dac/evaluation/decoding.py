"""How ``edge-dac eval`` decodes: the decoding options of each model kind, and the caption call of
each backend."""

from __future__ import annotations

from edge_dac.engines import CaptionEngine
from edge_dac.evaluation.speed import CaptionFn
from edge_dac.model.decoding import DecodingOptions, DecodingTask


def decoding_options(
    kind: str, steps: int, candidates: int, beam: int = 1, seed: int | None = 0, repair: bool = True,
    match_events: bool = True, event_guidance: float = DecodingOptions.event_guidance,
) -> DecodingOptions:
    """DAC: K samples of ``steps`` steps; AR: greedy for one candidate, else a beam at least K wide.
    ``repair``: broken captions cut back to a whole prefix, as the daemon does (off: the raw decoder);
    ``match_events``: candidates that name what the event head hears first, as the daemon does;
    ``event_guidance``: how hard the event head steers the decoder's words (0: off)."""
    beam_size = max(beam, candidates) if kind == "ar" else 1
    return DecodingOptions(
        steps=steps, candidates=candidates, beam_size=beam_size, seed=seed, repair=repair, match_events=match_events,
        event_guidance=event_guidance,
    )


def caption_function(engine: CaptionEngine, options: DecodingOptions) -> CaptionFn:
    """(batch, samples) windows -> ranked candidates per window: the one decoding task with the
    full options (beam width, seed, repair) on the engine's backend (its runner)."""
    task = DecodingTask(engine.captioner, options, engine.runner, engine.max_rows, engine.max_windows)
    return task.run
