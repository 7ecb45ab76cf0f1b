"""Evaluation of an mzen run (METHOD.md, "Evaluation protocol"): register the held-out views, render
them, score per zoom level, and compare cameras with ground truth after a Sim(3) alignment.

Keys (``ns-eval``'s ``results``): ``psnr``, ``ssim``, ``gss``, ``lss`` (+ ``lpips`` with cached
weights) as the mean over zoom levels of the per-level means; per level ``psnr_<z>x`` etc. with
``<z>`` the normalised dial formatted with ``%g``; with ground truth ``rot_err_deg``, ``trans_err``
(ground-truth scene units, after :func:`sim3_alignment` of the training cameras the run trained on), ``zoom_err_rel``, ``focal_err_rel`` for the training cameras and the
same with a ``test_`` prefix for the registered held-out cameras; also
``wide_pair_rot_err_deg``, the gauge-free mean pairwise relative-rotation error of the training
wide views; ``rot_err_deg_<z>x`` (and ``test_rot_err_deg_<z>x``) per zoom level.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mzen_ns.datamanager import stack_images
from mzen_ns.metrics import image_metrics
from mzen_ns.priming import PrimingConfig
from mzen_ns.registration import RegistrationConfig, prime_views, register


def sim3_alignment(
    learned_c2w: Float[np.ndarray, "N 3 4"], true_c2w: Float[np.ndarray, "N 3 4"]
) -> Tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) taking learned cameras onto true ones: R is the rotation closest to the
    mean of R_true_i · R_learned_iᵀ (chordal L2 mean, projected onto SO(3) by SVD), then s and t
    minimise Σ ||s R c_learned_i + t − c_true_i||² over camera centres for that R.

    Aligning the centres alone (Umeyama) is ill-conditioned for forward-facing rigs, whose centres
    are nearly coplanar and close together: their rotation is fixed by the orientations instead."""
    accumulated = sum(t[:3, :3] @ l[:3, :3].T for l, t in zip(learned_c2w, true_c2w))
    u, _, vt = np.linalg.svd(accumulated)
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    source, target = learned_c2w[:, :3, 3] @ rotation.T, true_c2w[:, :3, 3]
    xs, xt = source - source.mean(0), target - target.mean(0)
    spread = float((xs**2).sum())
    scale = max(float((xs * xt).sum()) / spread, 0.0) if spread > 1e-12 else 1.0  # coincident centres: no scale
    return scale, rotation, target.mean(0) - scale * source.mean(0)


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
    rot_errors, trans_errors = [], []
    for learned, truth in zip(learned_c2w, true_c2w):
        aligned_rot = rotation @ learned[:3, :3]
        cosine = (np.trace(aligned_rot.T @ truth[:3, :3]) - 1.0) / 2.0
        rot_errors.append(math.degrees(math.acos(float(np.clip(cosine, -1.0, 1.0)))))
        trans_errors.append(float(np.linalg.norm(scale * rotation @ learned[:3, 3] + shift - truth[:3, 3])))
    return rot_errors, trans_errors


def pairwise_rotation_error(learned_c2w: np.ndarray, true_c2w: np.ndarray) -> float:
    """Mean over camera pairs of the angle (deg) between learned and true relative rotations —
    gauge-free, so it needs no alignment (the check the developers' guide recommends)."""
    errors = []
    for i in range(len(learned_c2w)):
        for j in range(i + 1, len(learned_c2w)):
            rel_learned = learned_c2w[i, :3, :3].T @ learned_c2w[j, :3, :3]
            rel_true = true_c2w[i, :3, :3].T @ true_c2w[j, :3, :3]
            cosine = (np.trace(rel_learned.T @ rel_true) - 1.0) / 2.0
            errors.append(math.degrees(math.acos(float(np.clip(cosine, -1.0, 1.0)))))
    return float(np.mean(errors)) if errors else float("nan")


def level_key(name: str, dial: float) -> str:
    """``psnr`` at dial 16 → ``psnr_16x``."""
    return f"{name}_{dial:g}x"


def aggregate(per_image: List[Dict[str, float]], dials: List[float]) -> Dict[str, float]:
    """Per-level means, and their mean over levels for the plain keys."""
    by_level: Dict[float, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
    for values, dial in zip(per_image, dials):
        for name, value in values.items():
            by_level[dial][name].append(value)
    results: Dict[str, float] = {}
    names = sorted({name for values in per_image for name in values})
    for name in names:
        level_means = []
        for dial in sorted(by_level):
            if by_level[dial][name]:
                mean = float(np.mean(by_level[dial][name]))
                results[level_key(name, dial)] = mean
                level_means.append(mean)
        results[name] = float(np.mean(level_means))
    return results


def ground_truth_errors(
    learned_c2w: np.ndarray, learned_zoom: np.ndarray, truth: Dict[str, Any], dials: np.ndarray,
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


@torch.no_grad()
def render_view(model, cameras, index: int, magnification: float = 1.0) -> Float[Tensor, "H W 3"]:
    """Render one view of ``cameras`` at its current pose and zoom, its focal × ``magnification``."""
    camera = cameras.to_cameras(torch.tensor([index], device=cameras.dials.device))
    camera.fx = camera.fx * magnification
    camera.fy = camera.fy * magnification
    return model.get_outputs_for_camera(camera)["rgb"].clamp(0.0, 1.0)


def evaluate(
    pipeline, registration: RegistrationConfig, priming: PrimingConfig, renders: Optional[List[Tensor]] = None
) -> Dict[str, float]:
    """Register, render and score the held-out views; camera errors against ground truth.
    ``renders``, if given, receives each held-out view's render (for checks and pictures)."""
    model = pipeline.mzen_model
    train, test = pipeline.datamanager.train_dataset, pipeline.datamanager.eval_dataset
    train_images, test_images = stack_images(train), stack_images(test)
    test_dials = test.metadata["mzen_dial"].float()
    cameras, _ = prime_views(model, train_images, test_images, test_dials, priming)
    register(model, cameras, test_images, registration)
    lpips = model.lpips if getattr(model, "lpips_available", False) else None
    per_image = []
    for i in range(len(test)):
        rendered = render_view(model, cameras, i)
        if renders is not None:
            renders.append(rendered.cpu())
        per_image.append(image_metrics(test_images[i].to(rendered.device), rendered, lpips=lpips))
    results = aggregate(per_image, test_dials.tolist())

    trained = model.cameras
    solved = trained.solved.cpu().numpy()  # cameras the run never trained on are not scored
    train_truth = train.metadata["mzen_ground_truth"]
    solved_truth = {"c2w": train_truth["c2w"][solved], "zoom": train_truth["zoom"][solved]}
    errors, alignment = ground_truth_errors(
        trained.c2w().detach().cpu().numpy()[solved], trained.zoom().detach().cpu().numpy()[solved], solved_truth,
        trained.dials.cpu().numpy()[solved],
    )
    results.update(errors)
    wide = trained.is_wide.cpu().numpy() & solved
    true_c2w = train_truth["c2w"].numpy()
    have = wide & ~np.isnan(true_c2w).any(axis=(1, 2))
    if have.sum() >= 2:
        learned = trained.c2w().detach().cpu().numpy()
        results["wide_pair_rot_err_deg"] = pairwise_rotation_error(learned[have], true_c2w[have])
    if train_truth.get("focal"):
        results["focal_err_rel"] = abs(float(trained.focal) - train_truth["focal"]) / train_truth["focal"]
    test_errors, _ = ground_truth_errors(
        cameras.c2w().detach().cpu().numpy(), cameras.zoom().detach().cpu().numpy(),
        test.metadata["mzen_ground_truth"], test_dials.numpy(), alignment,
    )
    results.update({f"test_{name}": value for name, value in test_errors.items()})
    return results
