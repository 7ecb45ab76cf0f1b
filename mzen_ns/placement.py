"""Where a run's cameras start: the wide views from the initialiser's ladder, and every zoom-in from
the geometry the run started from or the window search.

Plain functions of the cameras (or the model), the training data and the configs; the pipeline
decides when they run (:mod:`mzen_ns.pipeline`), evaluation reuses :func:`locate_in_run` for
held-out views. Each solver runs once under ``torch.distributed`` and every process adopts its
answer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from mzen_ns.cameras import ZoomCameras
from mzen_ns.distributed import decided_once, share_decision
from mzen_ns.priming.images import area_resize, image_ncc
from mzen_ns.priming.plan import (
    CandidateCamera,
    Judge,
    PrimingConfig,
    PrimingPlan,
    Views,
    apply_plan,
    empty_plan,
    placed_plan,
    plan_priming,
    score_kind,
)

if TYPE_CHECKING:
    from mzen_ns.geometry.initialiser import Decision, Frame
    from mzen_ns.model import MZENModel


class FieldJudge:
    """Asks the field whether a candidate camera sees what a query shows (a
    :data:`~mzen_ns.priming.plan.Judge`): the field is rendered at the camera and compared with the
    query (NCC), both area-averaged to the scale the field resolves — after phase A, a wide view's
    pixel, so a query ``z`` times deeper than its wide view is compared at ``1/z`` of its size (never
    fewer than ``min_width`` pixels across). The render is supersampled (at most ``max_rays`` rays)
    so that each compared pixel averages the field over its footprint. One render costs about one
    training step's forward pass."""

    def __init__(
        self,
        model: MZENModel,
        centre: Callable[[int], Float[Tensor, "3"]],
        aspect: float,
        min_width: int = 8,
        max_rays: int = 4096,
    ) -> None:
        self.model, self.centre, self.aspect = model, centre, aspect
        self.min_width, self.max_rays = min_width, max_rays

    def __call__(self, image: Float[Tensor, "H W 3"], camera: CandidateCamera) -> float:
        height, width = int(image.shape[0]), int(image.shape[1])
        compared = min(width, max(self.min_width, round(width * min(1.0, camera.root_fx / camera.fx))))
        size = (compared, max(1, round(height * compared / width)))
        supersample = max(1, min(4, int(math.sqrt(self.max_rays / (size[0] * size[1])))))
        scale = size[0] * supersample / width
        c2w = torch.cat([camera.orientation.float(), self.centre(camera.root).float().cpu()[:, None]], dim=1)
        rendered = self.model.render_rgb(
            Cameras(
                camera_to_worlds=c2w[None],
                fx=torch.tensor([[camera.fx * scale]]),
                fy=torch.tensor([[camera.fx * self.aspect * scale]]),
                cx=camera.principal[None, :1].float() * scale,
                cy=camera.principal[None, 1:].float() * scale,
                width=size[0] * supersample,
                height=size[1] * supersample,
                camera_type=CameraType.PERSPECTIVE,
            ).to(self.model.device)
        )
        rendered_np = area_resize(rendered.detach().cpu().float().numpy(), *size)
        return image_ncc(rendered_np, area_resize(image.detach().cpu().float().numpy(), *size))


def start_wide_cameras(cameras: ZoomCameras, outputs: Any, frame: Frame, contraction_radius: float) -> Decision:
    """Start the wide cameras where the initialiser's ladder says (``cameras.config.init``), in the
    world ``frame`` chosen from the recovered geometry (:func:`~mzen_ns.geometry.initialiser.world_frame`);
    ``outputs``: the training dataparser outputs. Returns the ladder's decision."""
    from mzen_ns.geometry.initialiser import choose, world_frame  # OpenCV and pycolmap only when solving

    metadata = outputs.metadata
    paths = [Path(outputs.image_filenames[i]) for i in cameras.wide_index.tolist()]
    focal_prior = float(metadata["mzen_focal_guess"][0]) if metadata.get("mzen_focal_known") else None
    decision = decided_once(
        lambda: choose(cameras.config.init, paths, cameras.width, focal_prior, metadata["mzen_principal_point"])
    )
    if decision.solution is None:
        cameras.start_wides(decision.start, decision.reason)
    else:
        c2w, _, _ = world_frame(decision.solution, frame, contraction_radius)
        focal = decision.solution.focal
        cameras.start_wides(decision.start, decision.reason, torch.from_numpy(c2w).float(), focal, decision.focal_held)
    return decision


def locate_in_run(
    cameras: ZoomCameras,
    outputs: Any,
    wide_paths: Sequence[Path] = (),
    zoom_ins: Sequence[Tuple[Path, float]] = (),
    support: Sequence[Tuple[Path, float]] = (),
) -> Any:
    """Views placed by the solver the run's wide cameras started from
    (:func:`~mzen_ns.geometry.locate.locate`): wide images ``wide_paths`` and ``zoom_ins`` (image, dial)
    against the run's training wide views (``outputs``: the training dataparser outputs) and their
    cameras; ``support`` (image, dial): zoom-ins registered with them but not placed. The solver is
    given the run's focal where the run held the scene's."""
    from mzen_ns.geometry.locate import locate  # OpenCV and pycolmap only when solving

    wide = cameras.wide_index
    return decided_once(
        lambda: locate(
            cameras.record.start.rung,
            [Path(outputs.image_filenames[i]) for i in wide.tolist()],
            cameras.c2w(wide).detach().cpu().double().numpy(),
            wide_paths,
            zoom_ins,
            outputs.metadata["mzen_principal_point"],
            support=support,
            focal_prior=float(cameras.focal) if cameras.record.start.focal_held else None,
        )
    )


def place_zoom_ins_by_geometry(cameras: ZoomCameras, outputs: Any, config: PrimingConfig) -> PrimingPlan:
    """Zoom-ins registered against a structure-from-motion model of the wide views, started there:
    the rows of the priming plan they fill (none when the run did not start from ``sfm`` or
    ``config.geometry`` is off)."""
    kind = score_kind(config.method)
    start = cameras.record.rung
    if not config.geometry or start != "sfm" or cameras.zoom_index.numel() == 0:
        return empty_plan(kind)
    wide, zoom_ins = cameras.wide_index.cpu(), cameras.zoom_index.cpu()
    queries = [(Path(outputs.image_filenames[i]), float(cameras.dials[i])) for i in zoom_ins.tolist()]
    located = locate_in_run(cameras, outputs, zoom_ins=queries)
    CONSOLE.print(f"zoom-ins by geometry: {located.reason}")
    views = located.views
    c2w, zoom = torch.from_numpy(views.c2w).float(), torch.from_numpy(views.zoom).float()
    found = torch.isfinite(c2w).all(dim=(1, 2))
    query, source = zoom_ins[found], wide[torch.from_numpy(views.source).long()[found].clamp(min=0)]
    c2w, zoom = c2w[found], zoom[found]
    device = cameras.dials.device
    source_c2w = cameras.c2w(source.to(device)).detach().cpu()
    source_zoom = cameras.zoom(source.to(device)).detach().cpu()
    cameras.prime_from(query.to(device), c2w, zoom, source)
    return placed_plan(
        query,
        source_c2w[:, :, :3].transpose(1, 2) @ c2w[:, :, :3],
        zoom / source_zoom,
        source,
        torch.from_numpy(views.inliers)[found],
        cameras.fx(source.to(device)).detach().cpu(),
        cameras.principal_points().cpu()[source],
        float(cameras.aspect),
        kind,
    )


def prime_training_zoom_ins(
    cameras: ZoomCameras,
    images: Float[Tensor, "N H W 3"],
    outputs: Any,
    config: PrimingConfig,
    judge: Optional[Judge] = None,
) -> PrimingPlan:
    """Start every training zoom-in: by geometry where it registers (:func:`place_zoom_ins_by_geometry`),
    the others where the window search places them (``judge``, where given, deciding between a best
    placement and its rival: :class:`FieldJudge`); record how in ``cameras.match``. ``images``: the
    training images; ``outputs``: the training dataparser outputs."""
    device = cameras.dials.device
    placed = place_zoom_ins_by_geometry(cameras, outputs, config)
    views = Views(
        images,
        cameras.dials.cpu(),
        cameras.principal_points().cpu(),
        cameras.fx().detach().cpu(),
        float(cameras.aspect),
        cameras.c2w()[:, :, :3].detach().cpu(),
    )
    posed, roots = cameras.is_wide.cpu().clone(), torch.arange(len(views))
    posed[placed.query], roots[placed.query] = True, placed.root
    plan = plan_priming(views, posed, roots, config, judge)
    for name in ("source", "root", "centre", "relative_zoom", "rotation", "flagged"):  # decided once, on rank 0
        setattr(plan, name, share_decision(getattr(plan, name), device))
    apply_plan(
        plan,
        views.dials,
        lookup=lambda i: (cameras.c2w(i.to(device)), cameras.zoom(i.to(device))),
        assign=lambda i, c2w, zoom, wide: cameras.prime_from(i.to(device), c2w, zoom, wide),
    )
    plan = placed.cat(plan)
    cameras.match.record(plan.query, **{name: getattr(plan, name) for name in cameras.match.FIELDS})
    return plan


def place_training_zoom_ins(
    model: MZENModel,
    images: Float[Tensor, "N H W 3"],
    outputs: Any,
    config: PrimingConfig,
    field_trained: bool,
) -> PrimingPlan:
    """Start every training zoom-in of ``model`` (:func:`prime_training_zoom_ins`), the field deciding
    between rival placements where it was trained first (``field_trained``: phase A ran), and give
    each the appearance of the wide view it was placed from."""
    cameras = model.cameras
    judge = training_judge(model) if field_trained else None
    plan = prime_training_zoom_ins(cameras, images, outputs, config, judge)
    copy_appearance(model, plan.query.to(cameras.dials.device), plan.root.to(cameras.dials.device))
    return plan


@torch.no_grad()
def copy_appearance(model: MZENModel, targets: Int[Tensor, " Q"], sources: Int[Tensor, " Q"]) -> None:
    """Each image of ``targets`` starts with the appearance embedding of the one in ``sources``
    (nothing to copy for a field without appearance embeddings)."""
    embedding = getattr(model.field, "embedding_appearance", None)
    if embedding is not None:
        weight = embedding.embedding.weight
        weight[targets] = weight[sources]


def training_judge(model: MZENModel) -> FieldJudge:
    """The field's judge of training zoom-ins' placements: cameras turn about their wide views' centres."""
    cameras = model.cameras
    return FieldJudge(
        model,
        lambda root: cameras.c2w(torch.tensor([root], device=cameras.dials.device))[0, :, 3].detach(),
        float(cameras.aspect),
    )


def recorded_plan(cameras: ZoomCameras, config: PrimingConfig) -> PrimingPlan:
    """The priming of the training images as ``cameras`` recorded it (rotations not kept)."""
    record = cameras.match
    dials = cameras.dials.cpu()
    query = torch.nonzero(record.primed_images.cpu()).squeeze(-1)
    query = query[torch.argsort(dials[query], stable=True)]  # shallowest first, as planned
    runner_up = torch.where(record.has_runner_up, record.runner_up, torch.full_like(record.runner_up, -math.inf))
    return PrimingPlan(
        query=query,
        source=record.source.cpu()[query],
        root=cameras.match.root.cpu()[query],
        centre=record.centre.cpu()[query],
        relative_zoom=record.relative_zoom.cpu()[query],
        rotation=torch.eye(3).expand(query.numel(), 3, 3),
        score=record.score.cpu()[query],
        runner_up=runner_up.cpu()[query],
        flagged=record.flagged.cpu()[query],
        score_kind=score_kind(config.method),
        geometric=record.geometric.cpu()[query],
    )
