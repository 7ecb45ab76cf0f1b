"""The three-phase schedule (METHOD.md): which phase a step is in, and what each phase trains.

The phase is a pure function of the step, the total number of steps and the data (wide / all
image counts), so a resumed run and every process of a multi-GPU run agree on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Literal, Optional, Tuple, Type

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer, lr_scheduler
from typing_extensions import assert_never

Phase = Literal["A", "B", "C"]
PHASES: Tuple[Phase, ...] = ("A", "B", "C")

GROUP_PHASES: Dict[str, FrozenSet[Phase]] = {
    "fields": frozenset({"A", "C"}),
    "proposal_networks": frozenset({"A", "C"}),
    "wide_poses": frozenset({"A", "C"}),
    "focal": frozenset({"A", "C"}),
    "zoom_poses": frozenset({"B", "C"}),
    "zooms": frozenset({"B", "C"}),
}
"""The phases in which each optimizer group is stepped; outside them it is frozen."""


@dataclass
class PhaseScheduleConfig:
    """Where phases A / B / C start, as fractions of the total steps."""

    boundaries: Optional[Tuple[float, float]] = None
    """(start of B, start of C) as fractions of the total steps. Default (None), the paper's
    equal-budget idea: phase A gets n_wide / n_train of the steps, so each wide image gets the
    same passes as in a wide-only run of the same per-image budget; B then takes
    ``registration_share`` of the rest and C the remainder."""
    registration_share: float = 0.25
    """With default boundaries: phase B's share of the steps after phase A."""
    stop_after: Phase = "C"
    """Last phase to run: ``A`` stops training where phase B would start (configuration 3 of the
    paper, "MZEN after phase A"), with the learning-rate schedules of the full run."""
    prime: bool = True
    """Crop-and-match and prime the zoom-ins when leaving phase A (off for the baselines that
    train every camera from its initial pose)."""


@dataclass(frozen=True)
class PhaseSchedule:
    """Resolved phase boundaries in steps: A = [0, b_start), B = [b_start, c_start), C = rest."""

    b_start: int
    """First step of phase B."""
    c_start: int
    """First step of phase C."""
    total: int
    """Total number of training steps of the full schedule (the learning-rate schedules span it)."""
    end: int
    """Step at which training stops: the end of the last phase run (``stop_after``)."""

    @classmethod
    def resolve(cls, config: PhaseScheduleConfig, total_steps: int, n_wide: int, n_train: int) -> "PhaseSchedule":
        """Boundaries in steps for a run of ``total_steps`` on a scene with ``n_wide`` wide images
        among ``n_train`` training images (the scene's, even when a run loads only its wide ones)."""
        if config.boundaries is not None:
            b_fraction, c_fraction = config.boundaries
        else:
            b_fraction = n_wide / max(n_train, 1)
            c_fraction = b_fraction + config.registration_share * (1.0 - b_fraction)
        if not 0.0 <= b_fraction <= c_fraction <= 1.0:
            raise ValueError(f"phase boundaries must satisfy 0 <= B <= C <= 1, got ({b_fraction}, {c_fraction})")
        if n_wide == n_train:  # nothing to register: phase A runs to the end
            return cls(total_steps, total_steps, total_steps, total_steps)
        b_start, c_start = math.floor(b_fraction * total_steps), math.floor(c_fraction * total_steps)
        end = {"A": b_start, "B": c_start, "C": total_steps}[config.stop_after]
        return cls(b_start, c_start, total_steps, end)

    def end_of(self, phase: Phase) -> int:
        """First step after ``phase`` (capped at the end of training)."""
        if phase == "A":
            return min(self.b_start, self.end)
        if phase == "B":
            return min(self.c_start, self.end)
        if phase == "C":
            return self.end
        assert_never(phase)

    def phase_at(self, step: int) -> Phase:
        """The phase of training step ``step``."""
        if step < self.b_start:
            return "A"
        if step < self.c_start:
            return "B"
        return "C"

    def start_of(self, phase: Phase) -> int:
        """First step of ``phase``."""
        if phase == "A":
            return 0
        if phase == "B":
            return self.b_start
        if phase == "C":
            return self.c_start
        assert_never(phase)

    def group_start(self, group: str) -> int:
        """First step at which optimizer group ``group`` is stepped."""
        return min(self.start_of(phase) for phase in GROUP_PHASES.get(group, frozenset(PHASES)))


def active_groups(phase: Phase) -> FrozenSet[str]:
    """Optimizer groups stepped in ``phase``."""
    return frozenset(group for group, phases in GROUP_PHASES.items() if phase in phases)


@dataclass
class PhaseDecaySchedulerConfig(SchedulerConfig):
    """Exponential decay with warm-up that starts when the group's first phase starts."""

    _target: Type = field(default_factory=lambda: PhaseDecayScheduler)
    """Class this config instantiates."""

    lr_final: Optional[float] = None
    """Final learning rate (default: the initial one, i.e. constant after warm-up)."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0, counted from the group's start."""
    start_step: int = 0
    """First step of the group's first phase (filled in by the trainer from the phase schedule)."""
    max_steps: int = 100000
    """Last step of training (filled in by the trainer)."""


class PhaseDecayScheduler(Scheduler):
    """lr(step) = 0 before ``start_step``; then warm-up and log-linear decay to ``lr_final``."""

    config: PhaseDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        lr_final = self.config.lr_final if self.config.lr_final is not None else lr_init
        start, end, warmup = self.config.start_step, self.config.max_steps, self.config.warmup_steps

        def factor(step: int) -> float:
            if step < start:
                return 0.0
            local = step - start
            ramp = min(1.0, (local + 1) / warmup) if warmup > 0 else 1.0
            progress = min(1.0, local / max(end - start, 1))
            return ramp * math.exp(progress * math.log(lr_final / lr_init))

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
