"""Views placed in a run's world frame by the geometry its wide cameras started from.

The solver that started the run (structure from motion or the rotation-only model) is run again
on the training wide views together with the views to place: further wide views (held-out ones)
join the wide model, zoom-ins are registered against it (structure from motion only,
:func:`~mzen_ns.geometry.sfm.solve_sfm`). The similarity taking the joint solution's training
wide views onto the run's cameras then carries the placed views into the run's world frame. The
joint answer is only used when it agrees with the run: every training wide view solved, and its
aligned orientation within :data:`MAX_DISAGREEMENT_DEG` of the run's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from jaxtyping import Float
from typing_extensions import assert_never

from .rotation import solve_rotation
from .sfm import solve_sfm
from .similarity import apply_similarity, rotation_angles_deg, sim3_alignment
from .solution import PlacedViews, Rung

MAX_DISAGREEMENT_DEG = 1.0
"""A joint solution whose training views turn further than this from the run's cameras is refused."""


@dataclass
class Located:
    """Views placed in the run's world frame (wide views first, then zoom-ins), and how."""

    views: PlacedViews
    """Pose and zoom per view in the run's frame; ``source`` indexes the training wide views followed
    by the wide views placed with them."""
    reason: str
    """One line: what was placed and how well the joint solution agrees, or why nothing was."""
    seconds: float
    """Wall time of the joint solve."""


def locate(
    rung: Rung,
    train_paths: Sequence[Path],
    train_c2w: Float[np.ndarray, "K 3 4"],
    wide_paths: Sequence[Path] = (),
    zoom_ins: Sequence[Tuple[Path, float]] = (),
    principal_point: Optional[Tuple[float, float]] = None,
) -> Located:
    """Place the wide images ``wide_paths`` and the zoom-ins ``zoom_ins`` (image, dial relative to
    the wide views) against the training wide images ``train_paths``, whose cameras in the run are
    ``train_c2w``, with the solver ``rung``. The rotation-only model places wide views only.

    COLMAP is not given the run's focal: zoom-ins registered against a wide model started from a
    given focal came out 0.5–0.6° off their wide views on a 512×384 scene (0.03–0.12° without it),
    a difference not yet understood; the run's cameras fix the frame either way."""
    count, wides = len(train_paths), len(wide_paths)
    started = time.perf_counter()
    if rung == "sfm":
        solution = solve_sfm(list(train_paths) + list(wide_paths), zoom_ins=zoom_ins)
    elif rung == "rotation":
        solution = solve_rotation(list(train_paths) + list(wide_paths), principal_point)
    else:
        assert_never(rung)
    seconds = time.perf_counter() - started
    views = PlacedViews.unplaced(wides + len(zoom_ins))
    if solution.c2w is None:
        return Located(views, f"{rung} failed: {solution.failure}", seconds)
    solved = np.isfinite(solution.c2w[:count]).all(axis=(1, 2))
    if not solved.all():
        return Located(views, f"{rung} solved {int(solved.sum())} of {count} training wide views", seconds)
    alignment = sim3_alignment(solution.c2w[:count], train_c2w)
    disagreement = _max_angle_deg(apply_similarity(alignment, solution.c2w[:count]), train_c2w)
    if disagreement > MAX_DISAGREEMENT_DEG:
        reason = f"{rung}'s training views turn up to {disagreement:.2f}° from the run's cameras"
        return Located(views, reason, seconds)
    views.c2w[:wides] = apply_similarity(alignment, solution.c2w[count:])
    placed_wide = views.found[:wides]
    views.zoom[:wides] = np.where(placed_wide, 1.0, np.nan)
    views.source[:wides] = np.where(placed_wide, np.arange(count, count + wides), -1)
    if solution.zoom_ins is not None:
        poses = solution.zoom_ins
        views.c2w[wides:] = apply_similarity(alignment, poses.c2w)
        views.zoom[wides:], views.source[wides:], views.inliers[wides:] = poses.zoom, poses.source, poses.inliers
    found = views.found
    placed = [f"{int(found[:wides].sum())} of {wides} wide views"] * bool(wides)
    placed += [f"{int(found[wides:].sum())} of {len(zoom_ins)} zoom-ins"] * bool(zoom_ins)
    reason = (
        f"{rung}: placed {' and '.join(placed) or 'nothing'}; training views within {disagreement:.3f}° of the "
        f"run's cameras, {seconds:.1f} s"
    )
    return Located(views, reason, seconds)


def _max_angle_deg(a: Float[np.ndarray, "K 3 4"], b: Float[np.ndarray, "K 3 4"]) -> float:
    """Largest angle between corresponding orientations (degrees)."""
    return float(rotation_angles_deg(a[:, :, :3], b[:, :, :3]).max())
