"""The rotation-only model: every wide view turns about one optical centre (stage drift, a tripod).

Two views of any scene taken from one centre are related by the homography ``K R_jᵀ R_i K⁻¹``, so
rotations and the focal follow from feature matches alone, with no triangulation angle needed —
the regime where structure from motion fails. OpenCV's stitching module finds the matches (SIFT,
best-of-2-nearest with RANSAC homographies) and a first estimate (per-view focals from the
homographies, then its ray bundle adjuster). The shared focal is the median of OpenCV's per-view
focals: a shared-focal adjustment of our own fits the stage's small axial drift with the focal
(worse on stage-drift scenes, docs/results.md). The residual of the matches under the shared-focal
model says whether the model holds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from jaxtyping import Float

from .solution import WideSolution, cv_pose_to_gl

MIN_INLIERS = 20
"""Pairs with fewer RANSAC inliers do not enter the adjustment."""

MATCH_CONF = 0.3
"""OpenCV's best-of-2-nearest matching confidence."""


@dataclass
class RotationStart:
    """OpenCV's answer for views that share one optical centre, with the matches it rests on."""

    rotations: Float[np.ndarray, "K 3 3"]
    """Camera-to-world rotations, OpenCV camera axes, view order."""
    focal: float
    """The median of OpenCV's per-view focals (pixels)."""
    pairs: List[Tuple[int, int, np.ndarray, np.ndarray]]
    """(i, j, points in i, points in j): the RANSAC inliers of every pair with enough of them."""
    centre: Float[np.ndarray, " 2"]
    """The principal point the residuals are measured about."""


def solve_rotation(
    paths: Sequence[Path], principal_point: Optional[Tuple[float, float]] = None, match_conf: float = MATCH_CONF
) -> WideSolution:
    """Rotations (camera-to-world, nerfstudio axes, all centres at the origin) and the shared focal
    of the images ``paths``, with the adjustment's residual as evidence."""
    started = time.perf_counter()
    start = opencv_start(paths, principal_point, match_conf)
    if isinstance(start, str):
        return WideSolution("rotation", None, math.nan, failure=start, seconds=time.perf_counter() - started)
    residuals = transfer_residuals(start.rotations, start.focal, start.centre, start.pairs)
    evidence = {
        "registered": float(len(paths)),
        "views": float(len(paths)),
        "residual_px": float(np.sqrt(np.mean(residuals**2))),
        "median_residual_px": float(np.median(np.abs(residuals))),
        "pairs": float(len(start.pairs)),
    }
    solution = WideSolution("rotation", rotation_poses(start.rotations), start.focal, evidence=evidence)
    solution.seconds = time.perf_counter() - started
    return solution


def opencv_start(
    paths: Sequence[Path], principal_point: Optional[Tuple[float, float]] = None, match_conf: float = MATCH_CONF
) -> Union[RotationStart, str]:
    """OpenCV's rotations and focal for the images ``paths`` and the matches they rest on, or why
    there are none (the matches do not connect every view; no focal from the homographies)."""
    images = [_read(path) for path in paths]
    height, width = images[0].shape[:2]
    centre = np.array(principal_point if principal_point is not None else (width / 2.0, height / 2.0))
    features, pairwise, pairs = _match(images, match_conf)
    reached = _connected(len(images), pairs)
    if reached < len(images):
        return f"matches connect {reached} of {len(images)} views"
    estimate = _opencv_estimate(features, pairwise)
    if estimate is None:
        return "OpenCV's homography estimator found no focal"
    return RotationStart(estimate[0], estimate[1], pairs, centre)


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: OpenCV cannot read this image")
    return image


def _match(images: Sequence[np.ndarray], match_conf: float = MATCH_CONF):
    """SIFT features, OpenCV's pairwise matches (RANSAC homographies) and the pairs with enough inliers."""
    cv2.setRNGSeed(0)  # RANSAC draws from OpenCV's global generator: the same scene, the same answer
    features = [cv2.detail.computeImageFeatures2(cv2.SIFT_create(), image) for image in images]
    pairwise = cv2.detail_BestOf2NearestMatcher(False, match_conf).apply2(features)
    return features, pairwise, _inlier_pairs(features, pairwise, len(images))


def rotation_poses(rotations: Float[np.ndarray, "K 3 3"]) -> Float[np.ndarray, "K 3 4"]:
    """Camera-to-world poses in nerfstudio axes of OpenCV-axis rotations about the origin."""
    c2w = np.zeros((len(rotations), 3, 4))
    c2w[:, :, :3] = rotations
    return cv_pose_to_gl(c2w)


def _inlier_pairs(features, pairwise, count: int) -> List[Tuple[int, int, np.ndarray, np.ndarray]]:
    """(i, j, points in i, points in j) for every ordered-once pair with enough RANSAC inliers."""
    pairs = []
    for info in pairwise:
        i, j = info.src_img_idx, info.dst_img_idx
        if i < 0 or j < 0 or i >= j or info.num_inliers < MIN_INLIERS:
            continue
        mask = np.asarray(info.inliers_mask, dtype=bool).reshape(-1)
        matches = [m for m, keep in zip(info.matches, mask) if keep]
        src = np.array([features[i].keypoints[m.queryIdx].pt for m in matches])
        dst = np.array([features[j].keypoints[m.trainIdx].pt for m in matches])
        pairs.append((i, j, src, dst))
    return pairs


def _connected(count: int, pairs) -> int:
    """How many views the pairs connect to view 0."""
    reached, frontier = {0}, [0]
    while frontier:
        view = frontier.pop()
        for i, j, _, _ in pairs:
            for a, b in ((i, j), (j, i)):
                if a == view and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    return len(reached)


def _opencv_estimate(features, pairwise) -> Optional[Tuple[Float[np.ndarray, "K 3 3"], float]]:
    """OpenCV's estimate: rotations (camera-to-world, OpenCV axes) and the median of its per-view focals."""
    ok, cameras = cv2.detail_HomographyBasedEstimator().apply(features, pairwise, None)
    if not ok:
        return None
    for camera in cameras:
        camera.R = camera.R.astype(np.float32)
    adjuster = cv2.detail_BundleAdjusterRay()
    adjuster.setConfThresh(0.5)
    adjusted, refined = adjuster.apply(features, pairwise, cameras)
    cameras = refined if adjusted else cameras
    rotations = np.array([camera.R for camera in cameras], dtype=np.float64)
    return rotations, float(np.median([camera.focal for camera in cameras]))


def transfer_residuals(
    rotations: Float[np.ndarray, "K 3 3"], focal: float, centre: Float[np.ndarray, " 2"], pairs
) -> np.ndarray:
    """Symmetric transfer errors (pixels, x and y flattened) of every inlier of ``pairs`` under the
    rotation-only model with these OpenCV-axis ``rotations`` and ``focal``."""
    out = []
    for i, j, src, dst in pairs:
        out.append(_transfer(src, rotations[i], rotations[j], focal, centre) - dst)
        out.append(_transfer(dst, rotations[j], rotations[i], focal, centre) - src)
    return np.concatenate(out).reshape(-1)


def _transfer(points, rotation_from, rotation_to, focal: float, centre) -> np.ndarray:
    """Pixels of view ``from`` moved into view ``to`` through their shared optical centre."""
    rays = np.column_stack([(points - centre) / focal, np.ones(len(points))])
    seen = rays @ rotation_from.T @ rotation_to  # world = R_from · ray; in ``to``: R_toᵀ · world
    return seen[:, :2] / seen[:, 2:3] * focal + centre
