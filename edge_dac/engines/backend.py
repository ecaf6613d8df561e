"""What a compiled backend provides: whether it can run here, how to build its engine, how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edge_dac.model.captioner import Captioner
from edge_dac.model.decoding import Runner


class Backend:
    name = "none"
    precisions: tuple[str, ...] = ("fp32",)  # the first is the default
    devices: tuple[str, ...] = ("cpu",)
    batch_range = False  # True: the engine is built for batches up to --max-batch (TensorRT)

    def missing(self, device: str) -> str | None:
        """Why this backend cannot run on ``device`` here (one line), or None when it can."""
        if device not in self.devices:
            return f"runs on {' or '.join(self.devices)} only"
        return None

    def versions(self, device: str) -> dict[str, Any]:
        """Everything besides the model that decides what a build produces: part of the cache key."""
        return {"torch": torch.__version__}

    def build(self, captioner: Captioner, folder: Path, precision: str, max_batch: int | None, device: str) -> dict:
        """Write the engine files into ``folder``; return extra manifest entries."""
        raise NotImplementedError

    def load(self, captioner: Captioner, folder: Path, precision: str, device: str, threads: int | None) -> Runner:
        raise NotImplementedError


def gpu_fields(device: str) -> dict[str, Any]:
    """The card an engine was built on: TensorRT engines (and Triton kernels) only run on the same kind."""
    if not device.startswith("cuda"):
        return {}
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {"gpu": torch.cuda.get_device_name(index), "capability": f"{major}.{minor}", "cuda": torch.version.cuda}
