"""What a run records beside its camera model, kept in every checkpoint: where the wide cameras
started (:class:`WideStart`), which images it has trained on (:class:`RunRecord`), and how each
zoom-in was primed (:class:`MatchRecord`). :class:`~mzen_ns.cameras.ZoomCameras` holds one of each
(``record`` and ``match``); the camera model itself is parameters and rays only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Literal, Optional, Union, cast

import torch
from jaxtyping import Bool, Int
from torch import Tensor, nn

FocalOrigin = Literal["held", "solved"]
"""Whether a solver's start kept the scene's focal (its views do not pin one) or solved it."""


@dataclass(frozen=True)
class WideStart:
    """Where the wide cameras started: the initialiser's rung (``sfm``, ``rotation``, ``identity``, or
    ``given``), why, and for a solver's start where its focal came from."""

    rung: str
    """``sfm``, ``rotation``, ``identity`` or ``given`` (pose priors, the oracle, a checkpoint)."""
    reason: str
    """Why this start: the initialiser's verdict, or what gave the poses."""
    focal: Optional[FocalOrigin] = None
    """A solver's start only: ``held`` at the scene's focal or ``solved``."""

    @property
    def focal_held(self) -> bool:
        """Whether the start kept the scene's focal because its views do not pin one."""
        return self.focal == "held"

    def as_dict(self) -> Dict[str, str]:
        """The record as written to ``mzen_run_summary.json``, the solved-camera export and the
        checkpoint: ``start``, ``reason`` and, for a solver's start, ``focal``."""
        out = {"start": self.rung, "reason": self.reason}
        if self.focal is not None:
            out["focal"] = self.focal
        return out

    @classmethod
    def from_dict(cls, record: Dict[str, str]) -> "WideStart":
        """The start :meth:`as_dict` wrote."""
        focal = record.get("focal")
        if focal not in (None, "held", "solved"):
            raise ValueError(f"a wide start's focal is 'held' or 'solved', not {focal!r}")
        return cls(record["start"], record["reason"], cast(Optional[FocalOrigin], focal))


class RunRecord(nn.Module):
    """Where the wide cameras started and which images the run has trained on."""

    def __init__(self, count: int, start: Optional[WideStart] = None) -> None:
        super().__init__()
        self.register_buffer("trained_on", torch.zeros(count, dtype=torch.bool))
        """Images whose pixels a phase has sampled (the cameras the run trained)."""
        self.start: Optional[WideStart] = start
        """Where the wide cameras started; ``None`` until the initialiser has run."""

    @property
    def rung(self) -> Optional[str]:
        """The rung the wide cameras started from; ``None`` until the initialiser has run."""
        return None if self.start is None else self.start.rung

    def get_extra_state(self) -> Dict[str, Optional[Dict[str, str]]]:
        return {"start": None if self.start is None else self.start.as_dict()}

    def set_extra_state(self, state: Dict[str, Optional[Dict[str, str]]]) -> None:
        start = state["start"]
        self.start = None if start is None else WideStart.from_dict(start)


class MatchRecord(nn.Module):
    """How each image was primed: its root wide view, the image it was primed from, the window,
    zoom, scores and flag — for phases, viewer, export and evaluation."""

    FIELDS = ("source", "centre", "relative_zoom", "score", "runner_up", "flagged", "geometric")
    """What :meth:`record` stores per image (the root wide view is set by :meth:`set_root`)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.register_buffer("root", torch.full((count,), -1, dtype=torch.long))
        """For each zoom-in, the wide view its chain of priming starts from (−1: not primed)."""
        self.register_buffer("source", torch.full((count,), -1, dtype=torch.long))
        self.register_buffer("centre", torch.zeros(count, 2))
        self.register_buffer("relative_zoom", torch.ones(count))
        self.register_buffer("score", torch.zeros(count))
        self.register_buffer("runner_up", torch.zeros(count))
        self.register_buffer("has_runner_up", torch.zeros(count, dtype=torch.bool))
        self.register_buffer("flagged", torch.zeros(count, dtype=torch.bool))
        self.register_buffer("geometric", torch.zeros(count, dtype=torch.bool))
        """Placed by 2D–3D registration (its ``score``: the correspondences), not by the window search."""

    @torch.no_grad()
    def record(self, index: Int[Tensor, " Q"], **values: Tensor) -> None:
        """Store one value per :attr:`FIELDS` name for images ``index``; a runner-up of −inf
        (no rival) is kept as ``has_runner_up`` False, so the checkpoint stays finite."""
        index = index.to(self.source.device)
        for name in self.FIELDS:
            getattr(self, name)[index] = values[name].to(self.source.device, getattr(self, name).dtype)
        self.has_runner_up[index] = torch.isfinite(self.runner_up[index])
        self.runner_up[index] = torch.nan_to_num(self.runner_up[index], neginf=0.0)

    @torch.no_grad()
    def set_root(self, index: Int[Tensor, " Q"], wide: Int[Tensor, " Q"]) -> None:
        """Images ``index`` were primed from chains rooted in wide views ``wide``."""
        self.root[index.to(self.root.device)] = wide.to(self.root)

    @property
    def primed_images(self) -> Bool[Tensor, " N"]:
        """Which images have been primed (the one answer: a primed image has a root wide view)."""
        return self.root >= 0

    def primed(self, index: Union[int, Int[Tensor, " Q"]]) -> bool:
        """Whether image ``index`` (every image of it, true for none) has been primed."""
        return bool(self.primed_images[torch.as_tensor(index, device=self.root.device)].all())
