"""Views placed in a run's world frame by the geometry its wide cameras started from.

The solver that started the run (structure from motion or the rotation-only model) is run again
on the training wide views together with the views to place. Further wide views (held-out ones)
join the wide model. Zoom-ins are registered against a model of the training wide views alone
(structure from motion only, :func:`~mzen_ns.geometry.sfm.solve_sfm`), together with the run's
training zoom-ins as support: a deep zoom-in shares too little with the wide views, and registers
through the points the training zoom-ins triangulate. Held-out wide views stay out of that model:
with them in it, COLMAP's mapping changed and deep zoom-ins no longer registered (docs/results.md).
Each joint solution is carried into the run's world frame by the similarity taking its training wide
views onto the run's cameras, and used only when it agrees with the run: every training wide view
solved, and its aligned orientation within :data:`MAX_DISAGREEMENT_DEG` of the run's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from jaxtyping import Float
from typing_extensions import assert_never

from .rotation import solve_rotation
from .sfm import solve_sfm
from .similarity import apply_similarity, rotation_angles_deg, sim3_alignment
from .solution import PlacedViews, Rung, WideSolution

MAX_DISAGREEMENT_DEG = 1.0
"""A joint solution whose training views turn further than this from the run's cameras is refused."""


@dataclass
class LocateResult:
    """Views placed in the run's world frame (wide views first, then zoom-ins), and how."""

    views: PlacedViews
    """Pose and zoom per view in the run's frame; ``source`` indexes the training wide views followed
    by the wide views placed with them."""
    reason: str
    """One line: what was placed and how well the joint solution agrees, or why nothing was."""
    seconds: float
    """Wall time of the joint solves."""


def locate(
    rung: Rung,
    train_paths: Sequence[Path],
    train_c2w: Float[np.ndarray, "K 3 4"],
    wide_paths: Sequence[Path] = (),
    zoom_ins: Sequence[Tuple[Path, float]] = (),
    principal_point: Optional[Tuple[float, float]] = None,
    support: Sequence[Tuple[Path, float]] = (),
    focal_prior: Optional[float] = None,
) -> LocateResult:
    """Place the wide images ``wide_paths`` and the zoom-ins ``zoom_ins`` (image, dial relative to
    the wide views) against the training wide images ``train_paths``, whose cameras in the run are
    ``train_c2w``, with the solver ``rung``; ``support`` (image, dial): zoom-ins registered with
    ``zoom_ins`` but not placed (the run's training zoom-ins). The rotation-only model places wide
    views only. A zoom-in's ``source`` is the nearest placed or training wide view's centre.
    ``focal_prior``: the run's focal where the run held the scene's because its wide views do not pin
    one; every structure-from-motion solve here is given it, so it holds the same focal.

    Otherwise COLMAP finds its own focal, as the run's start did: where the views pin the focal that
    is the run's, and where they do not, the same scene gives COLMAP's same answer."""
    count, wides = len(train_paths), len(wide_paths)
    started = time.perf_counter()
    views = PlacedViews.unplaced(wides + len(zoom_ins))
    said: List[str] = []
    if wides:
        if rung == "sfm":
            solution = solve_sfm(list(train_paths) + list(wide_paths), focal_prior, principal_point)
        elif rung == "rotation":
            solution = solve_rotation(list(train_paths) + list(wide_paths), principal_point)
        else:
            assert_never(rung)
        aligned = _aligned(solution, count, train_c2w, rung)
        if isinstance(aligned, str):
            said.append(f"wide views not placed: {aligned}")
        else:
            views.c2w[:wides] = apply_similarity(aligned[0], solution.c2w[count:])
            placed = views.found[:wides]
            views.zoom[:wides] = np.where(placed, 1.0, np.nan)
            views.source[:wides] = np.where(placed, np.arange(count, count + wides), -1)
            said.append(f"placed {int(placed.sum())} of {wides} wide views (training views within {aligned[1]:.3f}°)")
    if zoom_ins and rung == "sfm":
        solution = solve_sfm(list(train_paths), focal_prior, principal_point, zoom_ins=list(support) + list(zoom_ins))
        aligned = _aligned(solution, count, train_c2w, rung)
        if isinstance(aligned, str):
            said.append(f"zoom-ins not placed: {aligned}")
        elif solution.zoom_ins is not None:
            poses, skip = solution.zoom_ins, len(support)
            views.c2w[wides:] = apply_similarity(aligned[0], poses.c2w[skip:])
            views.zoom[wides:], views.inliers[wides:] = poses.zoom[skip:], poses.inliers[skip:]
            views.source[wides:] = _nearest_wide(views.c2w[wides:], np.concatenate([train_c2w, views.c2w[:wides]]))
            placed = int(views.found[wides:].sum())
            said.append(f"placed {placed} of {len(zoom_ins)} zoom-ins (training views within {aligned[1]:.3f}°)")
    seconds = time.perf_counter() - started
    return LocateResult(views, f"{rung}: {'; '.join(said) or 'nothing to place'}, {seconds:.1f} s", seconds)


def _aligned(
    solution: WideSolution, count: int, train_c2w: Float[np.ndarray, "K 3 4"], rung: Rung
) -> Union[str, Tuple[Tuple[float, np.ndarray, np.ndarray], float]]:
    """(similarity onto the run's cameras, largest disagreement in degrees) of a joint solution whose
    first ``count`` views are the training wide views, or why it is not used."""
    if solution.c2w is None:
        return f"{rung} failed: {solution.failure}"
    solved = np.isfinite(solution.c2w[:count]).all(axis=(1, 2))
    if not solved.all():
        return f"{rung} solved {int(solved.sum())} of {count} training wide views"
    alignment = sim3_alignment(solution.c2w[:count], train_c2w)
    disagreement = _max_angle_deg(apply_similarity(alignment, solution.c2w[:count]), train_c2w)
    if disagreement > MAX_DISAGREEMENT_DEG:
        return f"{rung}'s training views turn up to {disagreement:.2f}° from the run's cameras"
    return alignment, disagreement


def _nearest_wide(c2w: Float[np.ndarray, "Z 3 4"], wide_c2w: Float[np.ndarray, "W 3 4"]) -> np.ndarray:
    """Per view, the index of the wide view whose optical centre is nearest (−1 where not placed)."""
    distances = np.linalg.norm(c2w[:, None, :, 3] - wide_c2w[None, :, :, 3], axis=-1)
    distances = np.where(np.isfinite(distances), distances, np.inf)
    return np.where(np.isfinite(c2w).all(axis=(1, 2)), distances.argmin(axis=1), -1)


def _max_angle_deg(a: Float[np.ndarray, "K 3 4"], b: Float[np.ndarray, "K 3 4"]) -> float:
    """Largest angle between corresponding orientations (degrees)."""
    return float(rotation_angles_deg(a[:, :, :3], b[:, :, :3]).max())
