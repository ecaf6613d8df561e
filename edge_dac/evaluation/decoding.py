"""How ``edge-dac eval`` decodes: the decoding options of each model kind, and the caption call of
each backend."""

from __future__ import annotations

from edge_dac.engines import CaptionEngine
from edge_dac.evaluation.speed import CaptionFn
from edge_dac.model.decoding import DecodingOptions


def decoding_options(kind: str, steps: int, candidates: int, beam: int = 1, seed: int | None = 0) -> DecodingOptions:
    """DAC: K samples of ``steps`` steps; AR: greedy for one candidate, else a beam at least K wide."""
    beam_size = max(beam, candidates) if kind == "ar" else 1
    return DecodingOptions(steps=steps, candidates=candidates, beam_size=beam_size, seed=seed)


def caption_function(engine: CaptionEngine, options: DecodingOptions) -> CaptionFn:
    """(batch, samples) windows -> ranked candidates per window, on the engine's backend.

    The eager backend runs ``Captioner.generate`` with the full options (beam width, seed); other
    backends take steps and candidates through the ``CaptionEngine`` interface.
    """
    if engine.backend == "eager":
        return lambda windows: engine.captioner.generate(windows, options)
    return lambda windows: engine.caption(windows, steps=options.steps, candidates=options.candidates)
