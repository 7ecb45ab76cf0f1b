"""One decision for every process of a multi-process run."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def share_decision(decision: Tensor, device: torch.device | str) -> Tensor:
    """Under ``torch.distributed``, every rank adopts rank 0's ``decision``; otherwise it is returned as is."""
    if not (dist.is_available() and dist.is_initialized()):
        return decision
    shared = decision.to(device).clone()
    dist.broadcast(shared, src=0)
    return shared.to(decision.device)


def is_main_process() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def decided_once(compute: Callable[[], T]) -> T:
    """Under ``torch.distributed``, rank 0 runs ``compute`` and every rank adopts its answer (a
    solver that is slow or not bit-reproducible runs once); otherwise ``compute()``."""
    if not (dist.is_available() and dist.is_initialized()):
        return compute()
    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]
