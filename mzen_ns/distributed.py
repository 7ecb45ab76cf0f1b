"""One decision for every process of a multi-process run."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


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
