"""The three-phase schedule: the one owner of what each phase trains, on which images, and when.

The policy (:data:`POLICY`) names, per phase, the optimizer groups it steps and the images it
samples; the model freezes, the optimizers step, the sampler draws and the learning-rate
schedules start from it alone, and :func:`check_sanity` refuses at set-up any parameter group it
does not know. The phase of a step is a pure function of the step, the total number of steps and
the data (wide / all image counts), so a resumed run and every process of a multi-GPU run agree
on it. ``docs/method.md`` describes the phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, FrozenSet, Iterable, Literal, Optional, Tuple, Type

import torch
from jaxtyping import Bool
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch import Tensor
from torch.optim import Optimizer, lr_scheduler
from typing_extensions import assert_never

Phase = Literal["A", "B", "C"]
PHASES: Tuple[Phase, ...] = ("A", "B", "C")
ImageSet = Literal["wide", "zoom-ins", "all"]

FIELD_GROUPS = frozenset({"fields", "proposal_networks"})
"""nerfacto's parameter groups (the radiance field and the proposal networks)."""
CAMERA_GROUPS = frozenset({"wide_poses", "zoom_poses", "focal", "zooms"})
"""The camera model's parameter groups."""


@dataclass(frozen=True)
class PhasePolicy:
    """What one phase trains."""

    title: str
    """Shown when the phase starts."""
    groups: FrozenSet[str]
    """Optimizer groups stepped in this phase; every other group is frozen."""
    images: ImageSet
    """Training images the sampler draws from."""


POLICY: Dict[Phase, PhasePolicy] = {
    "A": PhasePolicy(
        "phase A: bootstrap on wide views (field, wide poses, focal)",
        FIELD_GROUPS | {"wide_poses", "focal"},
        "wide",
    ),
    "B": PhasePolicy(
        "phase B: register zoom-ins (zoom-in poses and zooms; field frozen)",
        frozenset({"zoom_poses", "zooms"}),
        "zoom-ins",
    ),
    "C": PhasePolicy("phase C: joint refinement (everything, all images)", FIELD_GROUPS | CAMERA_GROUPS, "all"),
}
"""What each phase trains."""


Hold = Literal["none", "phase-a", "always"]
"""What is held of cameras from geometry: nothing, the wide cameras through phase A, or every camera
placed by geometry in every phase (the field is fitted to them, never they to the field)."""

GEOMETRIC_GROUPS = frozenset({"wide_poses", "focal"})
"""Groups that hold the wide cameras a geometric start set."""
HELD_AFTER_GEOMETRY: Dict[Hold, Dict[Phase, FrozenSet[str]]] = {
    "none": {"A": frozenset(), "B": frozenset(), "C": frozenset()},
    "phase-a": {"A": GEOMETRIC_GROUPS, "B": frozenset(), "C": frozenset()},
    "always": {"A": GEOMETRIC_GROUPS, "B": GEOMETRIC_GROUPS, "C": GEOMETRIC_GROUPS},
}
"""Groups each phase leaves alone, per :data:`Hold`: phase A fits the field to geometric cameras
instead of re-learning them from a blank field; with ``always`` phase C does not move them either
(zoom-ins placed by geometry are held per image, :meth:`~mzen_ns.cameras.ZoomCameras.hold`)."""


def trains(phase: Phase, group: str) -> bool:
    """Whether ``phase`` trains optimizer group ``group`` (its schedule starts with the first such phase)."""
    return group in POLICY[phase].groups


def steps(phase: Phase, group: str, hold: Hold = "none") -> bool:
    """Whether ``phase`` steps ``group`` now, with cameras from geometry held as ``hold`` says."""
    return trains(phase, group) and group not in HELD_AFTER_GEOMETRY[hold][phase]


def allowed_images(
    phase: Phase, is_wide: Bool[Tensor, " N"], unverified: Optional[Bool[Tensor, " N"]] = None
) -> Bool[Tensor, " N"]:
    """The training images ``phase`` samples from. A phase that trains the field leaves out the
    ``unverified`` images (zoom-ins whose placement priming could not verify): placed wrong, they
    would paint another part of the scene into the field; phase B may still register them."""
    images = POLICY[phase].images
    if images == "wide":
        allowed = is_wide.clone()
    elif images == "zoom-ins":
        allowed = ~is_wide
    elif images == "all":
        allowed = torch.ones_like(is_wide)
    else:
        assert_never(images)
    if unverified is not None and FIELD_GROUPS & POLICY[phase].groups:
        allowed &= ~unverified.to(allowed.device)
    return allowed


def check_sanity(param_groups: Iterable[str], optimizer_groups: Iterable[str]) -> None:
    """Refuse parameter groups the policy does not know or that have no optimizer configured.

    Raises:
        ValueError: naming the group.
    """
    known = FIELD_GROUPS | CAMERA_GROUPS
    configured = set(optimizer_groups)
    for group in param_groups:
        if group not in known:
            raise ValueError(f"parameter group {group!r} is not in mzen's phase policy (known: {sorted(known)})")
        if group not in configured:
            raise ValueError(f"parameter group {group!r} has no optimizer in the trainer config's 'optimizers'")


@dataclass
class PhaseScheduleConfig:
    """Where phases A / B / C start, as fractions of the total steps."""

    boundaries: Optional[Tuple[float, float]] = None
    """(start of B, start of C) as fractions of the steps; default: phase A gets n_wide / n_train of them."""
    registration_share: float = 0.25
    """With default boundaries: phase B's share of the steps after phase A."""
    stop_after: Phase = "C"
    """Last phase to run (``A``: stop where phase B would start, with the full run's learning-rate schedules)."""
    prime: bool = True
    """Prime the zoom-ins when leaving phase A (off for baselines that train every camera from its start)."""
    hold_geometric_start: bool = True
    """Hold wide cameras that started from geometry (SfM, rotation-only) through phase A."""
    refine_geometric: bool = False
    """Let phases B and C move cameras from geometry (wide views after a geometric start, zoom-ins placed by 2D–3D)."""
    refine_searched: bool = False
    """Let phases B and C refine zoom-ins the window search placed after a geometric start (off: kept as primed)."""
    train_field_on_flagged: bool = False
    """Let zoom-ins whose priming was flagged train the field in phase C (off: their placement is unverified)."""

    @property
    def flagged_left_out(self) -> bool:
        """Whether zoom-ins whose priming was flagged stay out of the field (what reports say of them)."""
        return not self.train_field_on_flagged

    def unverified(self, flagged: Bool[Tensor, " N"]) -> Optional[Bool[Tensor, " N"]]:
        """What phases that train the field leave out (:func:`allowed_images`): the flagged images, unless allowed."""
        return flagged if self.flagged_left_out else None

    def hold(self, geometric_start: bool) -> Hold:
        """What the phases hold of cameras from geometry, for a run whose wide cameras did or did not start there."""
        if not geometric_start:
            return "none"
        if not self.refine_geometric:
            return "always"
        return "phase-a" if self.hold_geometric_start else "none"


def held_zoom_ins(
    hold: Hold, refine_searched: bool, primed: Bool[Tensor, " N"], geometric: Bool[Tensor, " N"]
) -> Bool[Tensor, " N"]:
    """The images whose pose and zoom the phases leave where priming put them (``primed``: the
    images primed; ``geometric``: those placed by geometry), when
    cameras from geometry are held throughout (``hold`` ``always``): the zoom-ins placed by geometry,
    and every primed zoom-in unless those placed by the window search are refined
    (``refine_searched``). Otherwise none: wide cameras that move take their zoom-ins along."""
    if hold != "always":
        return torch.zeros_like(geometric)
    if refine_searched:
        return geometric.clone()
    return primed.clone()


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

    def without_registration(self) -> "PhaseSchedule":
        """This schedule with phase B's steps given to phase C, for a run with no zoom-in left to
        register (phase B would step nothing); unchanged where phase B is the last phase run."""
        if self.end <= self.c_start:
            return self
        return replace(self, c_start=self.b_start)

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
        """First step at which optimizer group ``group`` is stepped (the total when no phase steps it)."""
        starts = [self.start_of(phase) for phase in PHASES if trains(phase, group)]
        return min(starts, default=self.total)


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
