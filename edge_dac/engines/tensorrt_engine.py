"""TensorRT through torch-tensorrt's dynamo path: ``torch.export`` programs -> TensorRT engines -> ``.ep`` files.

Written against the torch-tensorrt documentation ("Compiling Exported Programs", "Dynamic shapes",
"Saving models", "Mixed precision"); our CI machines have no GPU, so this path runs only in
``bench/gpu_check.py`` on an NVIDIA machine. Choices:

* Both graphs are compiled whole (``min_block_size=1``) with a batch range: the audio graph for
  1..max_batch windows, the step for 1..max_batch x MAX_CANDIDATES rows. Larger requests are split.
* fp16 (default): the mixed-precision path of the installed version. Newer torch-tensorrt has
  rule-based autocast (``enable_autocast``) that keeps reductions such as the log-mel's in fp32;
  older ones take ``enabled_precisions`` and let TensorRT choose per layer. Inputs and outputs stay
  fp32 either way. fp32 turns TF32 off so that captions match eager's.
* Engines only run on the GPU model and TensorRT version that built them: both are in the key.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from edge_dac.engines.backend import Backend, gpu_fields
from edge_dac.engines.graphs import MAX_CANDIDATES, example_inputs, export_programs
from edge_dac.errors import first_line
from edge_dac.model.captioner import Captioner
from edge_dac.model.decoding import ChunkCache
from edge_dac.model.hearing import HEARING_CHUNK_SAMPLES

AUDIO_FILE = "audio.ep"
STEP_FILE = "step.ep"
HEARING_FILE = "hearing.ep"  # YAMNet, for a model whose event head hears with it
OPT_WINDOWS = 4  # TensorRT tunes kernels for this batch; the daemon captions a few windows at a time


def import_torch_tensorrt():
    """torch_tensorrt, or an ImportError whose message says why not.

    Without the TensorRT libraries (libnvinfer), ``import torch_tensorrt`` raises a plain
    ``Exception`` (or OSError), not ImportError: everything is caught and turned into one line.
    """
    try:
        import torch_tensorrt
    except ImportError as error:
        if error.name == "torch_tensorrt":
            raise ImportError(
                "torch_tensorrt is not installed (pip install 'edge-dac[tensorrt]'; Jetson: docs/jetson.md)"
            ) from None
        raise ImportError(f"torch_tensorrt cannot be imported ({first_line(error)})") from None
    except Exception as error:  # libnvinfer missing raises a bare Exception
        raise ImportError(
            f"torch_tensorrt cannot be imported ({first_line(error)}); is TensorRT (libnvinfer) installed?"
        ) from None
    return torch_tensorrt


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp16", "fp32")
    devices = ("cuda",)
    batch_range = True

    def missing(self, device: str) -> str | None:
        if not device.startswith("cuda"):
            return "runs on CUDA only"
        if not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False)"
        try:
            import_torch_tensorrt()
        except ImportError as error:
            return str(error)
        return None

    def versions(self, device: str) -> dict[str, Any]:
        torch_tensorrt = import_torch_tensorrt()
        try:
            import tensorrt

            tensorrt_version = tensorrt.__version__
        except Exception:  # noqa: BLE001 - the bindings are optional beside torch_tensorrt's own runtime
            tensorrt_version = "unknown"
        return {
            "torch": torch.__version__,
            "torch_tensorrt": torch_tensorrt.__version__,
            "tensorrt": tensorrt_version,
            **gpu_fields(device),
        }

    def build(self, captioner: Captioner, folder: Path, precision: str, max_batch: int | None, device: str) -> dict:
        torch_tensorrt = import_torch_tensorrt()
        max_batch = max_batch or 32
        captioner = captioner.to(device).eval()
        programs = export_programs(captioner, max_windows=max_batch)
        example = example_inputs(captioner, batch=1)
        opt = min(OPT_WINDOWS, max_batch)
        seconds = captioner.dims.max_audio_samples // HEARING_CHUNK_SAMPLES
        ranges = {
            "audio": (1, opt, max_batch), "step": (1, opt * 3, max_batch * MAX_CANDIDATES),
            "hearing": (1, opt * seconds, max_batch * seconds),
        }
        settings = _precision_settings(torch_tensorrt, precision)
        files = [("audio", AUDIO_FILE), ("step", STEP_FILE)] + [("hearing", HEARING_FILE)] * ("hearing" in programs)
        for name, path in files:
            low, middle, high = ranges[name]
            specs = [
                torch_tensorrt.Input(
                    min_shape=(low, *tensor.shape[1:]), opt_shape=(middle, *tensor.shape[1:]),
                    max_shape=(high, *tensor.shape[1:]), dtype=tensor.dtype,
                )
                for tensor in example[name]
            ]
            compiled = torch_tensorrt.dynamo.compile(
                programs[name], **_inputs_argument(torch_tensorrt.dynamo.compile, specs),
                device=torch.device(device), min_block_size=1, **settings,
            )
            saving = _inputs_argument(torch_tensorrt.save, specs, tensors=example[name])
            torch_tensorrt.save(compiled, str(folder / path), output_format="exported_program", **saving)
        return {"tensorrt": {"opt_windows": opt, "max_rows": max_batch * MAX_CANDIDATES, "settings": str(settings)}}

    def load(self, captioner: Captioner, folder: Path, precision: str, device: str, threads: int | None):
        torch_tensorrt = import_torch_tensorrt()
        audio = torch_tensorrt.load(str(folder / AUDIO_FILE)).module()
        step = torch_tensorrt.load(str(folder / STEP_FILE)).module()
        hearing = torch_tensorrt.load(str(folder / HEARING_FILE)).module() if captioner.hearing is not None else None
        return TensorRTRunner(audio, step, reads_code=bool(captioner.dims.wording_codes), hearing_module=hearing)


def _accepts(function, name: str) -> bool:
    return name in inspect.signature(function).parameters


def _inputs_argument(function, specs: list, tensors: tuple | None = None) -> dict[str, Any]:
    """``arg_inputs=`` (torch-tensorrt >= 2.5) or ``inputs=`` (older releases; save() wants tensors there)."""
    if _accepts(function, "arg_inputs"):
        return {"arg_inputs": specs}
    return {"inputs": list(tensors) if tensors is not None else specs}


def _precision_settings(torch_tensorrt, precision: str) -> dict[str, Any]:
    compile_fn = torch_tensorrt.dynamo.compile
    if precision == "fp32":
        settings: dict[str, Any] = {"disable_tf32": True} if _accepts(compile_fn, "disable_tf32") else {}
        if _accepts(compile_fn, "use_explicit_typing"):
            settings["use_explicit_typing"] = True
        else:
            settings["enabled_precisions"] = {torch.float32}
        return settings
    if _accepts(compile_fn, "enable_autocast"):  # rule-based autocast (weak typing is deprecated in TensorRT 10)
        low = "low_precision_type"
        if _accepts(compile_fn, "autocast_low_precision_type"):
            low = "autocast_low_precision_type"
        return {"use_explicit_typing": True, "enable_autocast": True, low: torch.float16}
    settings = {"enabled_precisions": {torch.float16, torch.float32}}
    if _accepts(compile_fn, "use_explicit_typing"):  # explicit typing would ignore enabled_precisions
        settings["use_explicit_typing"] = False
    return settings


class TensorRTRunner:
    def __init__(self, audio_module, step_module, reads_code: bool = False, hearing_module=None):
        self.audio_module, self.step_module = audio_module, step_module
        self.reads_code = reads_code
        self.heard = None
        if hearing_module is not None:
            self.heard = ChunkCache(HEARING_CHUNK_SAMPLES, lambda seconds: hearing_module(seconds.contiguous()).float())

    def context(
        self, windows: torch.Tensor, candidates: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        heard = (self.heard.features(windows).contiguous(),) if self.heard is not None else ()
        keys, values, *events = self.audio_module(windows.contiguous(), *heard)
        kv = keys.float().repeat_interleave(candidates, dim=0), values.float().repeat_interleave(candidates, dim=0)
        return kv, events[0].float().cpu() if events else None

    def step(self, noisy, t, self_cond, code, context):
        keys, values = context
        arguments = (noisy.contiguous(), t.contiguous(), self_cond.contiguous(), keys, values)
        if self.reads_code:
            arguments += (code.contiguous(),)
        logits, x0 = self.step_module(*arguments)
        return logits.float(), x0.float()
