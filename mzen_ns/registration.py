"""Registration of views the field was not trained on (NeRF-- protocol, METHOD.md): crop-and-match
against the training wide views, prime, then optimise pose and zoom with the field frozen — the
same camera model, matching and priming as phase B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor

from mzen_ns.cameras import ZoomCameras, ZoomCamerasConfig
from mzen_ns.crop_and_match import crop_and_match
from mzen_ns.model import MZENModel


@dataclass
class RegistrationConfig:
    """How held-out views are registered before they are scored."""

    steps: int = 300
    """Pose/zoom optimisation steps (field frozen)."""
    rays_per_step: int = 1024
    """Rays sampled per step over all held-out views."""
    lr: float = 3e-3
    """Adam learning rate of the poses and log-zooms."""
    match_work_width: int = 64
    """Crop-and-match working width (as in phase B)."""
    seed: int = 0
    """Seed of the ray sampling (registration is deterministic)."""


def prime_views(
    model: MZENModel, train_images: Float[Tensor, "N H W 3"], images: Float[Tensor, "T H W 3"],
    dials: Float[Tensor, "T"], match_work_width: int,
) -> Tuple[ZoomCameras, Tensor]:
    """Cameras for held-out views primed from their crop-and-match surrogates among training wide
    views (a wide held-out view is matched at dial 1, i.e. whole images). Returns the cameras and
    the training index of each view's surrogate."""
    trained = model.cameras
    wide_train = torch.nonzero(trained.is_wide).squeeze(-1).cpu()
    stacked = torch.cat([train_images[wide_train], images])
    stacked_dials = torch.cat([torch.ones(wide_train.numel()), dials.cpu().float()])
    is_candidate = torch.zeros(stacked.shape[0], dtype=torch.bool)
    is_candidate[: wide_train.numel()] = True
    result = crop_and_match(stacked, stacked_dials, is_candidate, work_width=match_work_width)
    surrogate = wide_train[result.matched]  # positions in `stacked` are training wide indices
    height, width = images.shape[1:3]
    cameras = ZoomCameras(
        ZoomCamerasConfig(zoom_model=trained.config.zoom_model),  # zoom-unaware runs register zoom-unaware
        dials=dials.cpu().float(),
        is_wide=torch.zeros(dials.numel(), dtype=torch.bool),  # every held-out zoom is learnable
        focal_guess=float(trained.focal.detach()),
        aspect=float(trained.aspect),
        cx=trained.cx[:1].expand(dials.numel()).cpu(),
        cy=trained.cy[:1].expand(dials.numel()).cpu(),
        width=width,
        height=height,
    ).to(trained.dials.device)
    cameras.log_focal.requires_grad_(False)
    with torch.no_grad():  # prime: the surrogate's learned pose, zoom = dial (held-out wide views: 1)
        cameras.base_c2w.copy_(trained.c2w(surrogate.to(trained.dials.device)).detach())
        cameras.zoom_pose.zero_()
        cameras.log_zoom.copy_(cameras.initial_zoom().log())
    cameras.matched_wide.copy_(surrogate.to(cameras.dials.device))
    return cameras, surrogate


def register(
    model: MZENModel, cameras: ZoomCameras, images: Float[Tensor, "T H W 3"], config: RegistrationConfig
) -> ZoomCameras:
    """Optimise held-out poses and zooms (not wide zooms) against their images, field frozen."""
    device = cameras.dials.device
    images = images.to(device)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for param in frozen:
        param.requires_grad_(False)
    wide = (cameras.dials == 1.0)
    optimizer = torch.optim.Adam([p for p in (cameras.zoom_pose, cameras.log_zoom) if p.requires_grad], lr=config.lr)
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
            if cameras.log_zoom.grad is not None:
                cameras.log_zoom.grad[wide] = 0.0
            optimizer.step()
    finally:
        for param in frozen:
            param.requires_grad_(True)
        model.train(was_training)
    return cameras


def render_rays(model: MZENModel, cameras: ZoomCameras, indices: Tensor, pixels: Tensor) -> Float[Tensor, "R 3"]:
    """RGB of the given pixels of ``cameras`` through the (eval-mode) field, differentiable in the cameras."""
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
    return model.get_outputs(bundle)["rgb"]
