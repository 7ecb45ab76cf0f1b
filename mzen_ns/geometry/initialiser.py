"""The initialiser's ladder: which solver's wide cameras to start from, and the world frame.

``auto`` tries structure from motion first (real 3D: it wins whenever the views have parallax),
then the rotation-only model (no parallax: stage drift, a tripod), then falls back to the
photometric ``identity`` start. Each answer is judged by evidence that needs no ground truth; a
refused answer is reported with its numbers, never used silently. The world frame is chosen from
the recovered geometry so the content sits where nerfacto's field has resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from jaxtyping import Float
from typing_extensions import assert_never

from .rotation import solve_rotation
from .sfm import FOCAL_PROBE, focal_pinned, solve_sfm
from .solution import IDENTITY_ASKED, Frame, Init, Start, WideSolution, choose_world_frame

SFM_MAX_REPROJECTION_PX = 1.0
"""COLMAP's mean reprojection error above this means its model does not explain the matches."""
SFM_MIN_TRIANGULATION_DEG = 1.0
"""Below this median triangulation angle the depth, and with it the focal, is not observed."""
SFM_MIN_POINTS = 50
"""Fewer sparse points than this is too little structure to trust."""
ROTATION_MAX_MEDIAN_RESIDUAL_PX = 1.0
"""The rotation-only model holds when its matches agree to within this (median, pixels)."""
FOCAL_RANGE = (0.2, 5.0)
"""A focal outside this multiple of the image width is degenerate (FoV about 170° or 11°)."""


@dataclass
class Decision:
    """The start the cameras take, and why."""

    start: Start
    """The rung that won."""
    reason: str
    """One line: the winner's numbers, and each refused rung's reason."""
    solution: Optional[WideSolution] = None
    """The winning solver's answer (``None`` for ``identity``)."""
    verdicts: List[Tuple[WideSolution, Optional[str]]] = field(default_factory=list)
    """Every solver tried, with why it was refused (``None``: accepted)."""

    @property
    def focal_held(self) -> bool:
        """Whether the winner kept the scene's focal because its views do not pin one."""
        return self.solution is not None and self.solution.evidence.get("focal_given_held", 0.0) > 0

    @property
    def caveat(self) -> Optional[str]:
        """What the user should know about the winner's focal, or ``None``."""
        if self.solution is None or self.solution.rung != "sfm" or focal_pinned(self.solution.evidence):
            return None
        rise = self.solution.evidence["focal_rise"]
        said = (
            f"the wide views do not pin the focal (moved {FOCAL_PROBE:.0%} either way, their reprojection "
            f"error changes {rise:+.1%}: a plane, or little depth)"
        )
        if self.focal_held:
            return f"{said}; it is held at the focal the scene gives"
        return (
            f"{said}; {self.solution.focal:.1f} px is one of a range that explains them as well, and sizes and "
            "the zoom-ins' places carry that: give the focal (`fl_x` or `fov_x_deg` in transforms.json) to hold it"
        )


class InitialiserError(RuntimeError):
    """A rung asked for by name failed or was refused."""


def judge(solution: WideSolution, width: int) -> Optional[str]:
    """Why ``solution`` must not be used, or ``None`` if it may."""
    if solution.failure is not None or solution.c2w is None:
        return solution.failure or "no answer"
    evidence = solution.evidence
    if evidence["registered"] < evidence["views"]:
        return f"registered {evidence['registered']:.0f} of {evidence['views']:.0f} wide views"
    if not FOCAL_RANGE[0] * width <= solution.focal <= FOCAL_RANGE[1] * width:
        return f"focal {solution.focal:.1f} px is degenerate for {width} px wide images"
    if solution.rung == "sfm":
        return _judge_sfm(evidence)
    if solution.rung == "rotation":
        if evidence["median_residual_px"] > ROTATION_MAX_MEDIAN_RESIDUAL_PX:
            return f"median residual {evidence['median_residual_px']:.2f} px: the views do not share a centre"
        return None
    assert_never(solution.rung)


def _judge_sfm(evidence) -> Optional[str]:
    if evidence["reprojection_px"] > SFM_MAX_REPROJECTION_PX:
        return f"reprojection error {evidence['reprojection_px']:.2f} px"
    if evidence["points"] < SFM_MIN_POINTS:
        return f"only {evidence['points']:.0f} points"
    if evidence["triangulation_deg"] < SFM_MIN_TRIANGULATION_DEG:
        return f"median triangulation angle {evidence['triangulation_deg']:.2f}°: no parallax to see depth"
    return None


def describe(solution: WideSolution) -> str:
    """The solver's numbers in a few words."""
    numbers = ", ".join(f"{key} {value:.3g}" for key, value in solution.evidence.items())
    return f"{solution.rung}: focal {solution.focal:.1f} px, {numbers}, {solution.seconds:.1f} s"


def choose(
    init: Init,
    paths: Sequence[Path],
    width: int,
    focal_prior: Optional[float] = None,
    principal_point: Optional[Tuple[float, float]] = None,
) -> Decision:
    """Run the ladder on the wide images ``paths`` (native size) for the ``init`` asked for."""
    if init == "identity":
        return Decision("identity", IDENTITY_ASKED)
    if len(paths) < 2:
        if init != "auto":
            raise InitialiserError(f"init '{init}' needs at least two wide views, got {len(paths)}")
        return Decision("identity", f"{len(paths)} wide view: nothing to solve")
    solvers: List[Callable[[], WideSolution]] = []
    if init in ("auto", "sfm"):
        solvers.append(lambda: solve_sfm(paths, focal_prior, principal_point))
    if init in ("auto", "rotation"):
        solvers.append(lambda: solve_rotation(paths, principal_point))
    verdicts: List[Tuple[WideSolution, Optional[str]]] = []
    for solve in solvers:
        solution = solve()
        refusal = judge(solution, width)
        verdicts.append((solution, refusal))
        if refusal is None:
            refused = "; ".join(f"{s.rung} refused ({why})" for s, why in verdicts[:-1])
            reason = describe(solution) + (f"; {refused}" if refused else "")
            return Decision(solution.rung, reason, solution, verdicts)
    refused = "; ".join(f"{s.rung} refused ({why})" for s, why in verdicts)
    if init != "auto":
        raise InitialiserError(f"init '{init}' failed: {refused} (init 'auto' falls back to identity)")
    return Decision("identity", f"no geometric start: {refused}", None, verdicts)


def world_frame(
    solution: WideSolution, frame: Frame, contraction_radius: float = 1.0
) -> Tuple[Float[np.ndarray, "K 3 4"], Float[np.ndarray, "P 3"], float]:
    """The solution's cameras and points in the world frame mzen trains in (:func:`choose_world_frame`,
    the first wide view the reference), and the scale applied. A rotation-only solution has no
    points: its centres are the origin in either frame."""
    assert solution.c2w is not None
    chosen = choose_world_frame(solution.c2w[0], solution.points, frame, contraction_radius)
    return chosen.cameras(solution.c2w), chosen.points(solution.points), chosen.scale


def decision_record(decision: Decision) -> dict:
    """The decision as JSON: the winner, the reason, and every solver's numbers and verdict."""
    return {
        "start": decision.start,
        "reason": decision.reason,
        "caveat": decision.caveat,
        "tried": [
            {
                "rung": solution.rung,
                "accepted": refusal is None,
                "refused_because": refusal,
                "focal": solution.focal if math.isfinite(solution.focal) else None,
                "evidence": solution.evidence,
                "seconds": solution.seconds,
            }
            for solution, refusal in decision.verdicts
        ],
    }
