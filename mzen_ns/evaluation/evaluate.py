"""Evaluation of an mzen run (``ns-eval``): register the held-out views, render them, score per
zoom level, and compare cameras with ground truth after a Sim(3) alignment (``docs/method.md``).

Keys (``ns-eval``'s ``results``): ``psnr``, ``ssim``, ``gss``, ``lss`` (+ ``lpips`` with cached
weights) as the mean over zoom levels of the per-level means; per level ``psnr_<z>x`` etc. with
``<z>`` the normalised dial formatted with ``%g``, with ``psnr_<z>x_std`` (standard deviation over
that level's held-out views), ``psnr_<z>x_worst`` (its worst view) and ``views_<z>x`` (their
count); with ground truth ``rot_err_deg``, ``trans_err``
(ground-truth scene units, after :func:`~mzen_ns.evaluation.alignment.sim3_alignment` of the
training cameras the run trained on), ``zoom_err_rel``, ``focal_err_rel`` for the training cameras
and the same with a ``test_`` prefix for the registered held-out cameras; also
``wide_pair_rot_err_deg``, the gauge-free mean pairwise relative-rotation error of the training
wide views; ``zoom_source_rot_err_deg``, the same for each primed zoom-in against the wide view
it was primed from; ``rot_err_deg_<z>x`` (and ``test_rot_err_deg_<z>x``) per zoom level.

Where frames list their true surface points (``gt_points``), the error in each image's own pixels
(:mod:`mzen_ns.evaluation.reprojection`, after a similarity fitted to the wide views):
``reproj_px_<z>x`` (median over the level's points) and ``reproj_px_<z>x_p90`` for the training
images, ``test_reproj_px_<z>x[_p90]`` for the held-out ones. How the training zoom-ins were placed:
``zoom_ins_placed_2d3d``, ``zoom_ins_placed_search`` (by the window search, not flagged),
``zoom_ins_flagged``; with points, ``zoom_ins_wrong_unflagged`` and ``zoom_ins_wrong_flagged``:
zoom-ins that show another part of the scene (:func:`~mzen_ns.evaluation.reprojection.wrong`).
Of the held-out views: ``test_zoom_ins_flagged`` (placed by the window search with a flag),
``test_registration_went_back`` (registration moved them too far and they went back to where they
were placed) and, with points, ``test_wrong_unflagged`` and ``test_wrong_flagged`` after registration.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from mzen_ns.datamanager import stack_images
from mzen_ns.evaluation.alignment import ground_truth_errors, pairwise_rotation_error, relative_rotation_error
from mzen_ns.evaluation.keys import level_key
from mzen_ns.evaluation.metrics import image_metrics
from mzen_ns.evaluation.registration import (
    RegistrationConfig,
    held_views,
    locate_held_out,
    prime_views,
    register,
)
from mzen_ns.evaluation.reprojection import level_errors, own_pixel_errors, wrong
from mzen_ns.geometry.similarity import sim3_alignment
from mzen_ns.model import MZENModel
from mzen_ns.priming.plan import PrimingConfig

LOWER_IS_BETTER = frozenset({"lpips"})
"""Image metrics whose worst view is the largest value (every other metric's is the smallest)."""


def aggregate(per_image: List[Dict[str, float]], dials: List[float]) -> Dict[str, float]:
    """Per level: the mean over its held-out views (``psnr_<z>x``), their standard deviation
    (``psnr_<z>x_std``, sample, 0 for one view), the worst view (``psnr_<z>x_worst``) and the view
    count (``views_<z>x``); the plain keys are the mean of the level means."""
    by_level: Dict[float, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
    for values, dial in zip(per_image, dials):
        for name, value in values.items():
            by_level[dial][name].append(value)
    results: Dict[str, float] = {}
    for dial in sorted(by_level):
        results[level_key("views", dial)] = float(sum(1 for d in dials if d == dial))
    names = sorted({name for values in per_image for name in values})
    for name in names:
        level_means = []
        for dial in sorted(by_level):
            values = by_level[dial][name]
            if values:
                key = level_key(name, dial)
                results[key] = float(np.mean(values))
                results[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                results[f"{key}_worst"] = float(max(values) if name in LOWER_IS_BETTER else min(values))
                level_means.append(results[key])
        results[name] = float(np.mean(level_means))
    return results


@torch.no_grad()
def render_view(model: Any, cameras: Any, index: int, magnification: float = 1.0) -> Float[Tensor, "H W 3"]:
    """Render view ``index`` of ``cameras`` (:class:`~mzen_ns.cameras.ZoomCameras`) at its current
    pose and zoom with ``model`` in eval mode, its focal × ``magnification`` (about the principal point)."""
    if not magnification > 0:
        raise ValueError(f"magnification must be positive, got {magnification}")
    camera = cameras.to_cameras(torch.tensor([index], device=cameras.dials.device))
    camera.fx = camera.fx * magnification
    camera.fy = camera.fy * magnification
    return model.render_rgb(camera)


def save_renders(
    folder: Path,
    names: Sequence[str],
    dials: Sequence[float],
    references: Sequence[Float[Tensor, "H W 3"]],
    renders: Sequence[Float[Tensor, "H W 3"]],
) -> List[Path]:
    """One PNG per held-out view in ``folder``, ground truth left and render right, named
    ``<z>x_<stem>.png`` by the view's level and file name (``ns-eval --render-output-path``)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, dial, reference, rendered in zip(names, dials, references, renders):
        pair = torch.cat([reference.cpu(), rendered.cpu()], dim=1).clamp(0.0, 1.0)
        path = folder / f"{dial:g}x_{Path(name).stem}.png"
        Image.fromarray((pair.numpy() * 255.0 + 0.5).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def evaluate(
    model: MZENModel,
    datamanager: Any,
    registration: RegistrationConfig,
    priming: PrimingConfig,
    renders: Optional[List[Tensor]] = None,
    render_folder: Optional[Path] = None,
) -> Dict[str, float]:
    """Register, render and score the held-out views of ``datamanager`` (its eval dataset) with the
    trained ``model``, the field frozen; camera errors against ground truth.
    ``renders``, if given, receives each held-out view's render (for checks and pictures);
    ``render_folder``, if given, receives them as ground truth | render PNGs (:func:`save_renders`)."""
    train, test = datamanager.train_dataset, datamanager.eval_dataset
    train_images, test_images = stack_images(train), stack_images(test)
    test_dials = test.metadata["mzen_dial"].float()
    located = locate_held_out(model, datamanager.train_dataparser_outputs, test, registration)
    cameras, flagged = prime_views(model, train_images, test_images, test_dials, priming, located)
    went_back = register(model, cameras, test_images, registration, held_views(located, registration))
    say_unsure_views(test.metadata["mzen_file_paths"], flagged, went_back, registration.max_shift)
    lpips = model.lpips if getattr(model, "lpips_available", False) else None
    per_image, rendered_views = [], []
    for i in range(len(test)):
        rendered = render_view(model, cameras, i)
        rendered_views.append(rendered.cpu())
        per_image.append(image_metrics(test_images[i].to(rendered.device), rendered, lpips=lpips))
    results = aggregate(per_image, test_dials.tolist())
    if renders is not None:
        renders.extend(rendered_views)
    if render_folder is not None:
        names = [str(name) for name in test.metadata["mzen_file_paths"]]
        save_renders(render_folder, names, test_dials.tolist(), list(test_images), rendered_views)

    trained = model.cameras
    solved = trained.record.trained_on.cpu().numpy()  # cameras the run never trained on are not scored
    train_truth = train.metadata["mzen_ground_truth"]
    solved_truth = {"c2w": train_truth["c2w"][solved], "zoom": train_truth["zoom"][solved]}
    errors, alignment = ground_truth_errors(
        trained.c2w().detach().cpu().numpy()[solved],
        trained.zoom().detach().cpu().numpy()[solved],
        solved_truth,
        trained.dials.cpu().numpy()[solved],
    )
    results.update(errors)
    wide = trained.is_wide.cpu().numpy() & solved
    true_c2w = train_truth["c2w"].numpy()
    have = wide & ~np.isnan(true_c2w).any(axis=(1, 2))
    if have.sum() >= 2:
        learned = trained.c2w().detach().cpu().numpy()
        results["wide_pair_rot_err_deg"] = pairwise_rotation_error(learned[have], true_c2w[have])
        pairs = [(int(m), int(i)) for i, m in enumerate(trained.match.root.tolist()) if m >= 0 and solved[i]]
        pairs = [(m, i) for m, i in pairs if have[m] and not np.isnan(true_c2w[i]).any()]
        if pairs:
            results["zoom_source_rot_err_deg"] = relative_rotation_error(learned, true_c2w, pairs)
    if train_truth.get("focal"):
        results["focal_err_rel"] = abs(float(trained.focal) - train_truth["focal"]) / train_truth["focal"]
    test_errors, _ = ground_truth_errors(
        cameras.c2w().detach().cpu().numpy(),
        cameras.zoom().detach().cpu().numpy(),
        test.metadata["mzen_ground_truth"],
        test_dials.numpy(),
        alignment,
    )
    results.update({f"test_{name}": value for name, value in test_errors.items()})
    results.update(placement_counts(trained))
    results["test_zoom_ins_flagged"] = float(flagged.sum())
    results["test_registration_went_back"] = float(went_back.sum())
    results.update(own_pixel_results(trained, train_truth, cameras, test.metadata["mzen_ground_truth"], flagged))
    return results


def say_unsure_views(names: Sequence[Any], flagged: Tensor, went_back: Tensor, max_shift: float) -> None:
    """Name on the console the held-out views the window search flagged and those registration
    moved too far (scored where they were placed)."""
    for label, views in (
        ("placed by the window search with a flag (no clear best match)", flagged),
        (f"moved by registration over {max_shift:g} of their width: scored where they were placed", went_back),
    ):
        chosen = [str(names[i]) for i in torch.nonzero(views.cpu()).squeeze(-1).tolist()]
        if chosen:
            CONSOLE.print(f"[yellow]held-out views {label}: {', '.join(chosen)}", soft_wrap=True)  # names whole


def placement_counts(trained: Any) -> Dict[str, float]:
    """How the training zoom-ins of ``trained`` (:class:`~mzen_ns.cameras.ZoomCameras`) were placed:
    by 2D–3D matches, by the window search (not flagged), flagged."""
    record, zoom_ins = trained.match, trained.zoom_index
    primed = record.source[zoom_ins] >= 0
    geometric, flagged = record.geometric[zoom_ins] & primed, record.flagged[zoom_ins] & primed
    return {
        "zoom_ins_placed_2d3d": float(geometric.sum()),
        "zoom_ins_placed_search": float((primed & ~geometric & ~flagged).sum()),
        "zoom_ins_flagged": float(flagged.sum()),
    }


def own_pixel_results(
    trained: Any, train_truth: Dict[str, Any], held_out: Any, test_truth: Dict[str, Any], test_flagged: Tensor
):
    """Errors in each image's own pixels (:func:`~mzen_ns.evaluation.reprojection.own_pixel_errors`)
    of the training cameras the run trained on and of the registered held-out cameras, after the
    similarity fitted to the training wide views; wrongly placed training zoom-ins and held-out
    views, by flag (``test_flagged``: the held-out views' flags). Empty without true focal, two true
    wide poses and surface points."""
    solved = trained.record.trained_on.cpu().numpy()
    true_c2w = train_truth["c2w"].numpy()
    have = trained.is_wide.cpu().numpy() & solved & np.isfinite(true_c2w).all(axis=(1, 2))
    if not train_truth.get("focal") or have.sum() < 2 or train_truth.get("points") is None:
        return {}
    learned = trained.c2w().detach().cpu().numpy()
    alignment = sim3_alignment(learned[have], true_c2w[have, :3])
    train_errors = _own_pixel_errors(trained, train_truth, alignment)
    placed = solved | (trained.match.source.cpu().numpy() >= 0)  # a flagged zoom-in may never be trained on
    train_errors = [e if keep else np.zeros(0) for e, keep in zip(train_errors, placed)]
    results = level_errors(train_errors, trained.dials.cpu().tolist())
    test_errors = _own_pixel_errors(held_out, test_truth, alignment)
    results.update({f"test_{k}": v for k, v in level_errors(test_errors, held_out.dials.cpu().tolist()).items()})
    zoom_ins = trained.zoom_index.cpu().numpy()
    placed_wrong = wrong([train_errors[i] for i in zoom_ins], trained.width)
    flagged = trained.match.flagged.cpu().numpy()[zoom_ins]
    results["zoom_ins_wrong_unflagged"] = float((placed_wrong & ~flagged).sum())
    results["zoom_ins_wrong_flagged"] = float((placed_wrong & flagged).sum())
    test_wrong, test_flagged = wrong(test_errors, held_out.width), test_flagged.cpu().numpy()
    results["test_wrong_unflagged"] = float((test_wrong & ~test_flagged).sum())
    results["test_wrong_flagged"] = float((test_wrong & test_flagged).sum())
    return results


def _own_pixel_errors(cameras: Any, truth: Dict[str, Any], alignment) -> List[np.ndarray]:
    return own_pixel_errors(
        cameras.c2w().detach().cpu().numpy(),
        cameras.fx().detach().cpu().numpy(),
        truth["c2w"].numpy(),
        truth["focal"] * truth["zoom"].numpy() if truth.get("focal") else np.full(len(truth["zoom"]), np.nan),
        cameras.principal_points().cpu().numpy(),
        float(cameras.aspect),
        [None if p is None else p.numpy() for p in truth.get("points") or [None] * len(truth["zoom"])],
        alignment,
    )
