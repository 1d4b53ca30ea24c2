"""Running on PyTorch's own engine: devices, torch.distributed process groups, shared decisions.

``torchrun --nproc_per_node N -m nerbilstm train --distributed ...`` starts N processes; each
reads RANK / WORLD_SIZE / LOCAL_RANK from the environment torchrun sets, joins a process group
(gloo on CPU, NCCL on CUDA) and trains a DistributedDataParallel replica on its share of every
global batch. Multi-node runs use torchrun's usual rendezvous flags; nothing here changes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nerbilstm.errors import NerError


@dataclass
class Context:
    """Where this process stands: rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda when available, else cpu; cuda -> this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise NerError("--device cuda asked for, but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise NerError(f"unknown device {name!r}; expected auto, cpu or cuda")
    return torch.device("cpu")


def setup(device: str = "auto", distributed: bool = False) -> Context:
    """This process's Context; with ``distributed``, join the process group torchrun describes."""
    if not distributed:
        return Context(device=resolve_device(device))
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise NerError("--distributed needs the environment torchrun sets (RANK, WORLD_SIZE): launch with "
                       "torchrun --nproc_per_node N -m nerbilstm train --distributed ...")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), dev)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def share_flag(ctx: Context, value: bool) -> bool:
    """Rank 0's decision (e.g. stop early), made known to every rank."""
    if not ctx.distributed:
        return value
    flag = torch.tensor([int(value)], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def weights_checksum(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def gather_checksums(ctx: Context, model: torch.nn.Module) -> list[str]:
    """Every rank's weights checksum (the same list on every rank)."""
    mine = weights_checksum(model)
    if not ctx.distributed:
        return [mine]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, mine)
    return out
