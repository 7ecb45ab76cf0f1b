"""Camera errors against ground truth: a Sim(3) alignment for forward-facing rigs, per-camera
rotation and centre errors, and the gauge-free pairwise rotation error."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mzen_ns.evaluation.keys import level_key
from mzen_ns.geometry.similarity import rotation_angles_deg, sim3_alignment


def camera_errors(
    learned_c2w: np.ndarray, true_c2w: np.ndarray, alignment: Tuple[float, np.ndarray, np.ndarray]
) -> Tuple[float, float]:
    """Mean rotation error (deg) and camera-centre error (ground-truth units) after alignment."""
    rot_errors, trans_errors = per_camera_errors(learned_c2w, true_c2w, alignment)
    return float(np.mean(rot_errors)), float(np.mean(trans_errors))


def per_camera_errors(
    learned_c2w: np.ndarray, true_c2w: np.ndarray, alignment: Tuple[float, np.ndarray, np.ndarray]
) -> Tuple[List[float], List[float]]:
    """Each camera's rotation error (deg) and centre error (ground-truth units) after alignment."""
    scale, rotation, shift = alignment
    if len(learned_c2w) == 0:
        return [], []
    learned = np.asarray(learned_c2w, dtype=np.float64)
    truth = np.asarray(true_c2w, dtype=np.float64)
    rot_errors = rotation_angles_deg(rotation @ learned[:, :3, :3], truth[:, :3, :3]).tolist()
    centres = scale * learned[:, :3, 3] @ rotation.T + shift
    trans_errors = np.linalg.norm(centres - truth[:, :3, 3], axis=1).tolist()
    return rot_errors, trans_errors


def pairwise_rotation_error(learned_c2w: np.ndarray, true_c2w: np.ndarray) -> float:
    """Mean over camera pairs of the angle (deg) between learned and true relative rotations —
    gauge-free, so it needs no alignment (the check the developers' guide recommends)."""
    count = len(learned_c2w)
    pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    return relative_rotation_error(learned_c2w, true_c2w, pairs)


def relative_rotation_error(learned_c2w: np.ndarray, true_c2w: np.ndarray, pairs: Sequence[Tuple[int, int]]) -> float:
    """Mean over ``pairs`` (i, j) of the angle (deg) between the learned and true rotation from
    camera i to camera j; NaN without pairs."""
    if not pairs:
        return float("nan")
    first, second = (list(index) for index in zip(*pairs))
    rel_learned = _relative(np.asarray(learned_c2w, dtype=np.float64), first, second)
    rel_true = _relative(np.asarray(true_c2w, dtype=np.float64), first, second)
    return float(np.mean(rotation_angles_deg(rel_learned, rel_true)))


def _relative(c2w: np.ndarray, first: List[int], second: List[int]) -> np.ndarray:
    """The rotations from each camera in ``first`` to its partner in ``second``."""
    return np.einsum("nji,njk->nik", c2w[first, :3, :3], c2w[second, :3, :3])


def ground_truth_errors(
    learned_c2w: np.ndarray,
    learned_zoom: np.ndarray,
    truth: Dict[str, Any],
    dials: np.ndarray,
    alignment: Optional[Tuple[float, np.ndarray, np.ndarray]] = None,
) -> Tuple[Dict[str, float], Optional[Tuple[float, np.ndarray, np.ndarray]]]:
    """rot/trans/zoom errors where the scene has ground truth; the alignment used (fitted if None)."""
    results: Dict[str, float] = {}
    true_c2w = truth["c2w"].numpy()
    have_pose = ~np.isnan(true_c2w).any(axis=(1, 2))
    if have_pose.sum() >= 2 or (alignment is not None and have_pose.any()):
        if alignment is None:
            alignment = sim3_alignment(learned_c2w[have_pose], true_c2w[have_pose])
        rot, trans = per_camera_errors(learned_c2w[have_pose], true_c2w[have_pose], alignment)
        results["rot_err_deg"], results["trans_err"] = float(np.mean(rot)), float(np.mean(trans))
        for dial in np.unique(dials[have_pose]):  # per level: rot_err_deg_4x, …
            at_level = dials[have_pose] == dial
            results[level_key("rot_err_deg", float(dial))] = float(np.mean(np.asarray(rot)[at_level]))
    true_zoom = truth["zoom"].numpy()
    have_zoom = ~np.isnan(true_zoom)
    use = have_zoom & (dials != 1.0)  # wide zooms are the focal's gauge, not learned: zoom-ins only
    if use.any():
        results["zoom_err_rel"] = float(np.mean(np.abs(learned_zoom[use] - true_zoom[use]) / true_zoom[use]))
    return results, alignment
