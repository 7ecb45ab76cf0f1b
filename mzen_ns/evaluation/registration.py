"""Registration of views the field was not trained on (the NeRF-- protocol). Held-out wide views
are located by the geometry the run's wide cameras started from (:mod:`mzen_ns.geometry.locate`)
when it started from geometry; the others are matched against the training views and primed (the
run's :class:`~mzen_ns.priming.plan.PrimingConfig`, as in phase B, a held-out zoom-in also from the
located held-out wide views); then pose and zoom are optimised with the field frozen — the same
camera model, matching and priming as training — and a view that moved further than
``RegistrationConfig.max_shift`` of its width goes back to where it was placed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from mzen_ns.cameras import ZoomCameras, ZoomCamerasConfig
from mzen_ns.datamanager import stack_images
from mzen_ns.geometry.solution import GEOMETRIC, WorldFrame
from mzen_ns.model import MZENModel
from mzen_ns.placement import FieldJudge, locate_in_run
from mzen_ns.priming.plan import PrimingConfig, Views, apply_plan, plan_priming


@dataclass
class RegistrationConfig:
    """How held-out views are registered before they are scored."""

    steps: int = 300
    """Pose/zoom optimisation steps (field frozen)."""
    rays_per_step: int = 1024
    """Rays sampled per step over all held-out views."""
    lr: float = 3e-3
    """Adam learning rate of the poses and log-zooms at the first step."""
    final_lr_fraction: float = 0.01
    """Learning rate at the last step as a fraction of ``lr`` (exponential decay, so the stochastic steps settle)."""
    seed: int = 0
    """Seed of the ray sampling (registration is deterministic)."""
    geometry: bool = True
    """Place held-out views by the solver the run's wide cameras started from (``sfm``; ``rotation``: wide views)."""
    refine_located: bool = False
    """Also optimise the views placed by geometry photometrically (off: they keep the geometric pose)."""
    max_shift: float = 0.1
    """A view registration moved further than this fraction of its width (own pixels) goes back where it was placed."""
    shift_grid: int = 8
    """Pixels per side of the grid whose field depth measures how far registration moved a view."""


@dataclass
class LocatedHeldOut:
    """Held-out views placed by geometry before the others are primed."""

    c2w: Float[Tensor, "T 3 4"]
    """Camera-to-world per held-out view; NaN rows for views not placed."""
    zoom: Float[Tensor, " T"]
    """Zoom per held-out view (NaN where not placed)."""
    root: Int[Tensor, " T"]
    """Nearest wide view, indexed over the training views followed by the held-out views (−1: not placed)."""
    full_pose: bool = True
    """Whether the poses are whole (2D–3D matches, or the truth), not turns about the run's one centre."""

    @property
    def found(self) -> Bool[Tensor, " T"]:
        """Which held-out views were placed."""
        return torch.isfinite(self.c2w).all(dim=(1, 2))


def prime_views(
    model: MZENModel,
    train_images: Float[Tensor, "N H W 3"],
    images: Float[Tensor, "T H W 3"],
    dials: Float[Tensor, " T"],
    priming: PrimingConfig,
    located: Optional[LocatedHeldOut] = None,
) -> Tuple[ZoomCameras, Bool[Tensor, " T"]]:
    """Cameras for held-out views: those placed by geometry (``located``) start there, the others are
    primed as phase B primes zoom-ins, from the training views the run solved (wide views; for
    ``hierarchical`` also the registered zoom-ins, the located and the shallower held-out views); a
    held-out wide view is matched at relative zoom 1 (whole images). Returns the cameras and which
    views the window search placed with a flag (best not clearly better than its runner-up)."""
    trained = model.cameras
    n_train, count, device = train_images.shape[0], dials.numel(), trained.dials.device
    cameras = _held_out_cameras(trained, dials, images.shape[1:3])
    roots = torch.where(trained.is_wide.cpu(), torch.arange(n_train), trained.match.root.cpu())
    posed = trained.record.trained_on.cpu() & (roots >= 0)
    found = torch.zeros(count, dtype=torch.bool) if located is None else located.found.cpu()
    test_roots = torch.full((count,), -1)
    flagged = torch.zeros(count, dtype=torch.bool)
    if located is not None and found.any():
        index = torch.nonzero(found).squeeze(-1)
        test_roots[index] = located.root[index].cpu()
        cameras.prime_from(index.to(device), located.c2w[index].float(), located.zoom[index].float(), test_roots[index])
    if bool(found.all()):
        return cameras, flagged  # every view placed: nothing to prime
    # the plan numbers the posed training views, then the held-out ones; ``back`` maps it to the
    # training-then-held-out numbering (a training view never trained on, such as a flagged zoom-in
    # the phases left alone, primes nothing and is no query)
    keep = torch.nonzero(posed).squeeze(-1)
    back = torch.cat([keep, torch.arange(n_train, n_train + count)])
    renumber = torch.full((n_train + count,), -1, dtype=torch.long)
    renumber[back] = torch.arange(back.numel())
    all_roots = torch.cat([roots, test_roots])
    plan_roots = torch.where(all_roots >= 0, renumber[all_roots.clamp(min=0)], all_roots)[back]
    train_views = Views(
        train_images[keep],
        trained.dials.cpu()[keep],
        trained.principal_points().cpu()[keep],
        trained.fx().detach().cpu()[keep],
        float(trained.aspect),
        trained.c2w()[:, :, :3].detach().cpu()[keep],
    )
    test_focal = torch.where(found, cameras.fx().detach().cpu(), torch.zeros(count))
    test_views = Views(
        images,
        dials.cpu().float(),
        cameras.principal_points().cpu(),
        test_focal,
        train_views.aspect,
        cameras.c2w()[:, :, :3].detach().cpu(),
    )
    views = train_views.cat(test_views)

    def lookup(index: Tensor) -> Tuple[Tensor, Tensor]:  # a source is a training view or a shallower held-out one
        index = back[index]
        held_out = (index >= n_train).to(device)
        train_index, test_index = index.clamp(max=n_train - 1).to(device), (index - n_train).clamp(min=0).to(device)
        c2w = torch.where(held_out[:, None, None], cameras.c2w(test_index), trained.c2w(train_index))
        return c2w.detach(), torch.where(held_out, cameras.zoom(test_index), trained.zoom(train_index)).detach()

    judge = FieldJudge(model, lambda root: lookup(torch.tensor([root]))[0][0, :, 3], float(trained.aspect))
    plan = plan_priming(views, torch.cat([torch.ones_like(keep, dtype=torch.bool), found]), plan_roots, priming, judge)

    apply_plan(
        plan,
        views.dials,
        lookup,
        lambda i, c2w, zoom, wide: cameras.prime_from((back[i] - n_train).to(device), c2w, zoom, back[wide]),
    )
    flagged[back[plan.query] - n_train] = plan.flagged & ~plan.geometric
    return cameras, flagged


def locate_held_out(model: MZENModel, train: Any, dataset: Any, config: RegistrationConfig) -> Optional[LocatedHeldOut]:
    """Held-out views of ``dataset`` placed by the solver the wide cameras of ``model`` (trained on
    the dataparser outputs ``train``) started from
    (:func:`~mzen_ns.geometry.locate.locate`: wide views, and zoom-ins after an ``sfm`` start), at
    their ground truth for an oracle run (:func:`true_placement`), or ``None`` when the run did not
    start from geometry or ``config.geometry`` is off."""
    cameras = model.cameras
    if cameras.config.ground_truth:
        return true_placement(dataset, model.oracle_frame())
    start = cameras.record.rung
    dials = dataset.metadata["mzen_dial"].float()
    wide, zoom_ins = torch.nonzero(dials == 1.0).squeeze(-1), torch.nonzero(dials != 1.0).squeeze(-1)
    if not config.geometry or start not in GEOMETRIC or (start == "rotation" and wide.numel() == 0):
        return None
    located = locate_in_run(
        cameras,
        train,
        [Path(dataset.image_filenames[i]) for i in wide.tolist()],
        [(Path(dataset.image_filenames[i]), float(dials[i])) for i in zoom_ins.tolist()] if start == "sfm" else [],
        support=[(Path(train.image_filenames[i]), float(cameras.dials[i])) for i in cameras.zoom_index.tolist()],
    )
    CONSOLE.print(f"held-out views by geometry: {located.reason}")
    views, count = located.views, dials.numel()
    order = torch.cat([wide, zoom_ins])[: len(views.c2w)]  # locate's order: wide views, then zoom-ins
    nan = torch.full((count,), math.nan)
    placed = LocatedHeldOut(
        torch.full((count, 3, 4), math.nan), nan, torch.full((count,), -1), full_pose=start == "sfm"
    )
    placed.c2w[order] = torch.from_numpy(views.c2w).float()
    placed.zoom[order] = torch.from_numpy(views.zoom).float()
    source = torch.from_numpy(views.source).long()
    placed.root[order] = evaluation_root(source, cameras.wide_index.cpu(), wide, cameras.dials.numel())
    return placed


def true_placement(dataset: Any, frame: WorldFrame) -> LocatedHeldOut:
    """Held-out views of an oracle run at their ground-truth cameras, in the oracle's world ``frame``
    (:meth:`MZENModel.oracle_frame`): the ceiling needs no registration start of its own, and an
    oracle on the zoom-ins alone has no wide view to prime from. Views without ground truth stay
    unplaced."""
    truth = dataset.metadata["mzen_ground_truth"]
    c2w = torch.from_numpy(frame.cameras(truth["c2w"][:, :3, :].double().numpy())).float()
    zoom = truth["zoom"].float()
    count = zoom.numel()
    found = torch.isfinite(c2w).all(dim=(1, 2)) & torch.isfinite(zoom)
    nan = torch.tensor(math.nan)
    return LocatedHeldOut(
        torch.where(found[:, None, None], c2w, nan), torch.where(found, zoom, nan), torch.full((count,), -1)
    )


def evaluation_root(
    source: Int[Tensor, " T"], train_wide: Int[Tensor, " K"], held_out_wide: Int[Tensor, " W"], n_train: int
) -> Int[Tensor, " T"]:
    """A nearest wide view as :func:`~mzen_ns.geometry.locate.locate` numbers it (the training wide
    views ``train_wide``, then the held-out wide views ``held_out_wide``) as an index over the
    training views followed by the held-out views; −1 (none) stays −1."""
    lookup = torch.cat([train_wide, n_train + held_out_wide, torch.tensor([-1])])
    return lookup[torch.where(source >= 0, source, torch.full_like(source, lookup.numel() - 1))]


def _held_out_cameras(trained: ZoomCameras, dials: Tensor, size) -> ZoomCameras:
    """Cameras for held-out views: every zoom learnable (held-out wide ones too), focal fixed at the run's."""
    height, width = int(size[0]), int(size[1])
    count = dials.numel()
    cameras = ZoomCameras(
        ZoomCamerasConfig(zoom_model=trained.config.zoom_model),  # zoom-unaware runs register zoom-unaware
        dials=dials.cpu().float(),
        is_wide=torch.zeros(count, dtype=torch.bool),
        focal_guess=float(trained.focal.detach()),
        aspect=float(trained.aspect),
        cx=trained.cx[:1].expand(count).cpu(),
        cy=trained.cy[:1].expand(count).cpu(),
        width=width,
        height=height,
    ).to(trained.dials.device)
    cameras.log_focal.requires_grad_(False)
    return cameras


def register(
    model: MZENModel,
    cameras: ZoomCameras,
    images: Float[Tensor, "T H W 3"],
    config: RegistrationConfig,
    held: Optional[Bool[Tensor, " T"]] = None,
) -> Bool[Tensor, " T"]:
    """Optimise held-out poses and zooms (not wide zooms) against their images, field frozen;
    views ``held`` keep their pose and zoom. A view that moved further than ``config.max_shift`` of
    its width in its own pixels (:func:`own_pixel_shift`) goes back to where it started: a frozen
    field that does not resolve a deep view's detail can pull it to wherever its blur fits best,
    another part of the scene. Returns which views went back."""
    device = cameras.dials.device
    held = torch.zeros(cameras.dials.numel(), dtype=torch.bool) if held is None else held.cpu()
    images = images.to(device)
    start = _StartOf(cameras)
    points, pixels = surface_grid(model, cameras, config.shift_grid)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    wide = cameras.dials == 1.0
    optimizer, schedule = registration_optimizer(
        [p for p in (cameras.zoom_pose, cameras.log_zoom) if p.requires_grad], config
    )
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    count, height, width = images.shape[:3]
    was_training = model.training
    model.eval()
    try:
        for _ in range(config.steps):
            idx = torch.randint(count, (config.rays_per_step,), generator=generator).to(device)
            rows = torch.randint(height, (config.rays_per_step,), generator=generator).to(device)
            cols = torch.randint(width, (config.rays_per_step,), generator=generator).to(device)
            rgb = render_rays(model, cameras, idx, torch.stack([rows, cols], -1))
            loss = (rgb - images[idx, rows, cols, :3]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cameras.log_zoom.grad is not None:  # never moved by Adam: zero from the start
                cameras.log_zoom.grad[wide | held.to(device)] = 0.0
            cameras.zoom_pose.grad[cameras.slot[held.to(device)]] = 0.0
            optimizer.step()
            schedule.step()
    finally:
        for param in frozen:
            param.requires_grad_(True)
        model.train(was_training)
    moved_too_far = own_pixel_shift(cameras, points, pixels) > config.max_shift * cameras.width
    start.restore(cameras, moved_too_far)
    return moved_too_far


class _StartOf:
    """A copy of the cameras' pose corrections and zooms, to send views back to."""

    def __init__(self, cameras: ZoomCameras) -> None:
        self.zoom_pose, self.log_zoom = cameras.zoom_pose.detach().clone(), cameras.log_zoom.detach().clone()

    @torch.no_grad()
    def restore(self, cameras: ZoomCameras, views: Bool[Tensor, " T"]) -> None:
        """Put ``views`` back where they started."""
        index = torch.nonzero(views).squeeze(-1).to(cameras.dials.device)
        cameras.zoom_pose[cameras.slot[index]] = self.zoom_pose[cameras.slot[index]]
        cameras.log_zoom[index] = self.log_zoom[index]


def grid_pixels(side: int, height: int, width: int) -> Int[Tensor, "P 2"]:
    """(row, column) of a ``side`` × ``side`` grid of pixels spread evenly over an image."""
    rows = ((torch.arange(side) + 0.5) * height / side).long()
    cols = ((torch.arange(side) + 0.5) * width / side).long()
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)


@torch.no_grad()
def surface_grid(
    model: MZENModel, cameras: ZoomCameras, side: int
) -> Tuple[Float[Tensor, "T P 3"], Int[Tensor, "P 2"]]:
    """Per view, the points the field shows at its :func:`grid_pixels` (median depth along each
    ray), seen through its current camera; and those pixels."""
    count, device = cameras.dials.numel(), cameras.dials.device
    grid = grid_pixels(side, int(cameras.height), int(cameras.width))
    indices = torch.arange(count).repeat_interleave(grid.shape[0]).to(device)
    pixels = grid.repeat(count, 1).to(device)
    origins, directions, _, _ = cameras.rays(indices, pixels)
    was_training = model.training
    model.eval()
    try:
        depth = render_outputs(model, cameras, indices, pixels)["depth"]
    finally:
        model.train(was_training)
    return (origins + directions * depth.reshape(-1, 1)).reshape(count, -1, 3), grid


@torch.no_grad()
def own_pixel_shift(
    cameras: ZoomCameras, points: Float[Tensor, "T P 3"], pixels: Int[Tensor, "P 2"]
) -> Float[Tensor, " T"]:
    """Per view, the median distance in its own pixels between where its camera now sees ``points``
    and the (row, column) ``pixels`` they were rendered from (:func:`surface_grid`); a point now
    behind the camera counts as infinitely far."""
    centres = pixels.flip(-1).float() + 0.5  # (x, y) of the pixel centres
    c2w = cameras.c2w().detach().cpu()
    fx, principal = cameras.fx().detach().cpu(), cameras.principal_points().cpu()
    local = (points.cpu() - c2w[:, None, :, 3]) @ c2w[:, :, :3]  # OpenGL camera axes
    depth = -local[..., 2]
    safe = torch.where(depth > 1e-9, depth, torch.ones_like(depth))
    x = principal[:, None, 0] + fx[:, None] * local[..., 0] / safe
    y = principal[:, None, 1] - fx[:, None] * float(cameras.aspect) * local[..., 1] / safe
    distance = torch.linalg.norm(torch.stack([x, y], -1) - centres[None], dim=-1)
    distance = torch.where(depth > 1e-9, distance, torch.full_like(distance, math.inf))
    return distance.median(dim=1).values


def registration_optimizer(
    params: List[Tensor], config: RegistrationConfig
) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam at ``config.lr``, decayed exponentially to ``config.final_lr_fraction`` of it by the last step.

    At a constant rate the poses keep wandering by about one step around the optimum as the rays
    are redrawn each step; decayed, they settle."""
    if not 0.0 < config.final_lr_fraction <= 1.0:
        raise ValueError(f"registration.final_lr_fraction must be in (0, 1], got {config.final_lr_fraction}")
    optimizer = torch.optim.Adam(params, lr=config.lr)
    gamma = config.final_lr_fraction ** (1.0 / max(config.steps - 1, 1))
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)


def render_rays(model: MZENModel, cameras: ZoomCameras, indices: Tensor, pixels: Tensor) -> Float[Tensor, "R 3"]:
    """RGB of the given pixels of ``cameras`` through the (eval-mode) field, differentiable in the cameras."""
    return render_outputs(model, cameras, indices, pixels)["rgb"]


def render_outputs(model: MZENModel, cameras: ZoomCameras, indices: Tensor, pixels: Tensor) -> Dict[str, Tensor]:
    """The model's outputs (``rgb``, ``depth``, …) at the given (row, column) pixels of ``cameras``."""
    origins, directions, norms, areas = cameras.rays(indices, pixels)
    bundle = RayBundle(
        origins=origins,
        directions=directions,
        pixel_area=areas,
        camera_indices=torch.zeros_like(indices)[:, None],
        metadata={"directions_norm": norms},
    )
    if model.collider is not None:
        bundle = model.collider(bundle)
    return model.get_outputs(bundle)


def find_view(names: List[str], view: str) -> Optional[int]:
    """Index of ``view`` among ``names``: exact path, else a unique file name or stem."""
    if view in names:
        return names.index(view)
    matches = [i for i, name in enumerate(names) if Path(name).name == view or Path(name).stem == view]
    if len(matches) > 1:
        raise ValueError(f"view {view!r} is ambiguous: {', '.join(names[i] for i in matches)}; give its path")
    return matches[0] if matches else None


def camera_for_view(
    model: MZENModel, datamanager: Any, registration: RegistrationConfig, priming: PrimingConfig, view: str
) -> Tuple[ZoomCameras, int, str]:
    """(cameras, index, split) of a run's view by name: the learned training camera of ``model``, or a
    held-out view of ``datamanager`` registered as ``ns-eval`` registers it."""
    train = datamanager.train_dataset
    index = find_view([str(p) for p in train.metadata["mzen_file_paths"]], view)
    if index is not None:
        return model.cameras, index, "train"
    test = datamanager.eval_dataset
    names = [str(p) for p in test.metadata["mzen_file_paths"]] if test is not None else []
    index = find_view(names, view)
    if index is None:
        known = [str(p) for p in train.metadata["mzen_file_paths"]] + names
        raise ValueError(f"no view {view!r} in this run; its views are: {', '.join(known)}")
    image = stack_images(test)[index : index + 1]
    dial = test.metadata["mzen_dial"][index : index + 1].float()
    located = locate_held_out(model, datamanager.train_dataparser_outputs, test, registration)
    if located is not None:  # registered alone: a wide view among the held-out ones is itself
        n_train = model.cameras.dials.numel()
        root = located.root[index : index + 1].clamp(max=n_train)
        located = LocatedHeldOut(
            located.c2w[index : index + 1], located.zoom[index : index + 1], root, located.full_pose
        )
    cameras, _ = prime_views(model, stack_images(train), image, dial, priming, located)
    register(model, cameras, image, registration, held_views(located, registration))
    return cameras, 0, "test"


def held_views(located: Optional[LocatedHeldOut], config: RegistrationConfig) -> Optional[Tensor]:
    """The placed views registration must keep in place: those with whole poses, unless
    ``refine_located``. A frozen field that does not resolve a deep view's detail pulls a pose that
    2D–3D matches fixed away from it; a wide view the rotation-only model turned about the run's
    centre has no position of its own, so refining it is left on (docs/results.md)."""
    if located is None or config.refine_located or not located.full_pose:
        return None
    return located.found
