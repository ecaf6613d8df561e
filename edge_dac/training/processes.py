"""The processes of a run: one, or several started by torchrun (DDP), and what they must agree on."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from edge_dac.errors import EdgeDacError
from edge_dac.training.config import TrainConfig


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel when there are several processes."""
        if self.world_size == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the processes (the global batch's, as one process would see it)."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / self.world_size).tolist(), strict=True))

    def from_rank0(self, value: float) -> float:
        """Rank 0's value on every rank: decisions from clocks (which differ) must be the same everywhere."""
        if self.world_size == 1:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def agree(self, flag: bool) -> bool:
        """True on every rank when rank 0 says so (all ranks must stop at the same step)."""
        return bool(self.from_rank0(float(flag)))


def setup_processes(config: TrainConfig) -> Processes:
    """One process, or one of several started by torchrun (WORLD_SIZE, RANK, LOCAL_RANK set)."""
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise EdgeDacError("device: cuda asked for, but torch sees no CUDA GPU; set device: cpu or auto")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def autocast_for(config: TrainConfig, device: torch.device):
    """Mixed precision on GPU only (bf16 by default); CPU trains in fp32."""
    precision = config.precision
    if device.type != "cuda" or precision == "fp32":
        return nullcontext(), None
    if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
