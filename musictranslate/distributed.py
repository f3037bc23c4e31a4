"""Several processes training one model under ``torchrun``, or one process without it.

Every rank draws its own batches of the same domain; DistributedDataParallel averages the
gradients (gloo on CPU, nccl on CUDA); only rank 0 writes. Without ``torchrun`` every method is
a no-op, so the training code reads the same either way.
"""

from __future__ import annotations

import os

import torch
from torch import nn


class Distributed:
    """Rank and world size under torchrun (gloo on CPU, nccl on CUDA); a no-op otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.world))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module, partly_used: bool = False) -> nn.Module:
        """DDP around ``module``; ``partly_used`` when a step touches only some of its parameters."""
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=partly_used)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
