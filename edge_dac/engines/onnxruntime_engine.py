"""ONNX Runtime on the CPU: the two graphs exported to ONNX once, run by one session each.

fp32 writes the same captions as eager. int8 quantises the step graph's weights (dynamic
quantisation: int8 weights, activations quantised on the fly); the audio graph stays fp32 because
its front end (a DFT as a matrix) loses the quiet bands at 8 bits, and it runs once per window
while the step runs steps x candidates times. An int8 build measures how many captions change
against fp32 on the bundled demo clips and writes the share into the manifest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loguru import logger

from edge_dac.engines.backend import Backend
from edge_dac.engines.graphs import (
    CHUNK_INPUTS,
    CHUNK_OUTPUTS,
    HEARD_INPUT,
    HEARING_INPUTS,
    HEARING_OUTPUTS,
    MIX_INPUTS,
    STEP_OUTPUTS,
    audio_inputs,
    audio_outputs,
    export_programs,
    step_inputs,
)
from edge_dac.model.captioner import Captioner
from edge_dac.model.decoding import ChunkCache
from edge_dac.model.hearing import HEARING_CHUNK_SAMPLES

AUDIO_FILE = "audio.onnx"
CHUNK_FILE, MIX_FILE = "chunk.onnx", "mix.onnx"  # a streaming encoder's audio side
HEARING_FILE = "hearing.onnx"  # YAMNet, for a model whose event head hears with it
STEP_FILE = "step.onnx"
STEP_FP32_FILE = "step.fp32.onnx"  # int8 builds keep the fp32 step for the quality check


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    devices = ("cpu",)

    def missing(self, device: str) -> str | None:
        if reason := super().missing(device):
            return reason
        # Looked up, not imported: onnx and onnxscript (the exporter's, ~50 MB and 900 modules) are only
        # needed to build an engine, and a daemon that loads a built one must not keep them resident.
        for name in ("onnxruntime", "onnx", "onnxscript"):  # onnxscript: torch.onnx's exporter needs it
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed (pip install 'edge-dac[onnx]')"
        return None

    def versions(self, device: str) -> dict[str, Any]:
        # The installed versions (the same strings as the modules' __version__), without importing them.
        return {"torch": torch.__version__, "onnx": metadata.version("onnx"),
                "onnxruntime": metadata.version("onnxruntime")}

    def build(self, captioner: Captioner, folder: Path, precision: str, max_batch: int | None, device: str) -> dict:
        programs = export_programs(captioner.cpu().eval())
        step_file = STEP_FP32_FILE if precision == "int8" else STEP_FILE
        if "chunk" in programs:  # a streaming encoder: its chunk and mix graphs replace the audio graph
            _to_onnx(programs["chunk"], folder / CHUNK_FILE, CHUNK_INPUTS, CHUNK_OUTPUTS)
            _to_onnx(programs["mix"], folder / MIX_FILE, MIX_INPUTS, audio_outputs(captioner.dims))
        else:
            dims = captioner.dims
            _to_onnx(programs["audio"], folder / AUDIO_FILE, audio_inputs(dims), audio_outputs(dims))
        if "hearing" in programs:
            _to_onnx(programs["hearing"], folder / HEARING_FILE, HEARING_INPUTS, HEARING_OUTPUTS)
        _to_onnx(programs["step"], folder / step_file, step_inputs(captioner.dims), STEP_OUTPUTS)
        if precision != "int8":
            return {}
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet("root"):  # its advice to run shape inference first is for models without shapes
            quantize_dynamic(
                folder / STEP_FP32_FILE, folder / STEP_FILE, op_types_to_quantize=["MatMul", "Gemm"],
                weight_type=QuantType.QInt8,
            )
        quality = int8_quality(captioner, folder)
        logger.info(
            f"int8 check: {quality['differing_captions']} of {quality['clips']} demo captions differ from fp32 "
            f"({quality['differing_share']:.0%}), word agreement {quality['word_agreement']:.1%}"
        )
        return {"quality": quality}

    def load(self, captioner: Captioner, folder: Path, precision: str, device: str, threads: int | None):
        return OnnxRuntimeRunner(folder, STEP_FILE, threads, captioner.dims.encoder_chunk_samples)


def _to_onnx(program: torch.export.ExportedProgram, path: Path, inputs, outputs) -> None:
    # The exporter prints its stages and warns about optional packages (torchvision): not for users.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            program, f=str(path), input_names=list(inputs), output_names=list(outputs), dynamo=True,
            external_data=False, verbose=False,
        )


@contextlib.contextmanager
def _quiet(name: str):
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class OnnxRuntimeRunner:
    """The graphs in ``folder``; ``chunk_samples``: a streaming encoder's chunk, whose chunk and mix
    graphs then replace the audio graph."""

    def __init__(self, folder: Path, step_file: str, threads: int | None, chunk_samples: int = 0):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's choice (the physical cores)
        options.inter_op_num_threads = 1  # the graphs are one chain of ops; parallel branches buy nothing
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The arena on, the memory pattern off. With the audio graph run one window at a time (below),
        # the arena holds one window's activations and reuses them, where glibc without it fragments:
        # audio graph alone, 1 thread, shipped model, 3 interleaved runs of 40 windows: 39 ms against
        # 52 ms a window, peak RSS 113 against 165 MB; bench/daemon_latency.py 300 s back to back beside
        # two training runs: p50/p95 94/142 against 143/177 ms, peak RSS 431 against 427 MB, CPU 5.7
        # against 7.5 % of a core. (When batches of 4 windows went through, the arena
        # kept their +150 MB for the life of the process and was turned off; the pattern allocates each
        # run's activations as one block and stays off.)
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = False
        providers = ["CPUExecutionProvider"]
        self.chunks = self.mix = None
        if chunk_samples:
            chunk_session = onnxruntime.InferenceSession(str(folder / CHUNK_FILE), options, providers=providers)
            self.mix = onnxruntime.InferenceSession(str(folder / MIX_FILE), options, providers=providers)

            def encode(chunks: torch.Tensor) -> torch.Tensor:
                return torch.from_numpy(chunk_session.run(list(CHUNK_OUTPUTS), {"chunk": chunks.numpy()})[0])

            self.chunks = ChunkCache(chunk_samples, encode)
        else:
            self.audio = onnxruntime.InferenceSession(str(folder / AUDIO_FILE), options, providers=providers)
        self.heard = None
        if (folder / HEARING_FILE).exists():
            hearing = onnxruntime.InferenceSession(str(folder / HEARING_FILE), options, providers=providers)

            def hear(seconds: torch.Tensor) -> torch.Tensor:
                return torch.from_numpy(hearing.run(list(HEARING_OUTPUTS), {HEARING_INPUTS[0]: seconds.numpy()})[0])

            self.heard = ChunkCache(HEARING_CHUNK_SAMPLES, hear)
        self.step_session = onnxruntime.InferenceSession(str(folder / step_file), options, providers=providers)
        self.reads_code = "code" in {node.name for node in self.step_session.get_inputs()}
        # The graph the audio side runs (mix for a streaming encoder) and its outputs: keys, values[, events].
        self.audio_session = self.mix if self.chunks is not None else self.audio
        self.audio_names = [output.name for output in self.audio_session.get_outputs()]

    def context(
        self, windows: torch.Tensor, candidates: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], torch.Tensor | None]:
        # One window at a time: the audio graph runs once per window, so batching buys little, while
        # its activations grow with the batch (~35 MB a 10 s window) and set the process's peak memory.
        session, names = self.audio_session, self.audio_names
        if self.chunks is not None:
            features = self.chunks.features(windows).numpy()
            outputs = [session.run(names, {"features": f[None]}) for f in features]
        else:
            audio = windows.numpy()
            heard = self.heard.features(windows).numpy() if self.heard is not None else None
            feeds = [{"audio": audio[i : i + 1]} for i in range(len(audio))]
            if heard is not None:
                feeds = [feed | {HEARD_INPUT: heard[i : i + 1]} for i, feed in enumerate(feeds)]
            outputs = [session.run(names, feed) for feed in feeds]
        keys, values = (np.concatenate([output[i] for output in outputs]) for i in (0, 1))
        events = torch.from_numpy(np.concatenate([output[2] for output in outputs])) if len(names) > 2 else None
        return (np.repeat(keys, candidates, axis=0), np.repeat(values, candidates, axis=0)), events

    def step(self, noisy, t, self_cond, code, context):
        keys, values = context
        feeds = {
            "noisy": noisy.numpy(), "t": np.ascontiguousarray(t.numpy()), "self_cond": self_cond.numpy(),
            "keys": keys, "values": values,
        }
        if self.reads_code:
            feeds["code"] = np.ascontiguousarray(code.numpy())
        logits, x0 = self.step_session.run(list(STEP_OUTPUTS), feeds)
        return torch.from_numpy(logits), torch.from_numpy(x0)


def int8_quality(captioner: Captioner, folder: Path, steps: int = 6, candidates: int = 5) -> dict[str, Any]:
    """Captions of the bundled demo clips with the int8 step vs the fp32 step (same noise)."""
    from edge_dac.engines.base import CaptionEngine
    from edge_dac.engines.clips import demo_windows

    windows = demo_windows(captioner.dims.sample_rate, captioner.dims.max_audio_samples)
    captions = {}
    tokens = {}
    for name, step_file in (("fp32", STEP_FP32_FILE), ("int8", STEP_FILE)):
        runner = OnnxRuntimeRunner(folder, step_file, None, captioner.dims.encoder_chunk_samples)
        engine = CaptionEngine(captioner, "quality-check", runner=runner)
        results = engine.caption(windows, steps=steps, candidates=candidates)
        captions[name] = [result[0].caption for result in results]
        tokens[name] = [caption.split() for caption in captions[name]]
    differing = sum(a != b for a, b in zip(captions["fp32"], captions["int8"], strict=True))
    pairs = list(zip(tokens["fp32"], tokens["int8"], strict=True))
    same_words = sum(sum(x == y for x, y in zip(a, b, strict=False)) for a, b in pairs)
    words = sum(max(len(a), len(b)) for a, b in pairs) or 1
    return {
        "reference": "onnxruntime fp32",
        "clips": len(windows),
        "steps": steps,
        "candidates": candidates,
        "differing_captions": differing,
        "differing_share": round(differing / len(windows), 4),
        "word_agreement": round(same_words / words, 4),
    }
