"""MZEN's zoom-aware camera model (``docs/method.md``, "Camera model").

One shared base focal ``f`` (stored as ``log f``), a zoom scalar per image (``log z_i``,
initialised at the dial reading) and an SE(3) pose per image. Rays are generated here from pixel
coordinates and these parameters, so gradients reach focal, zoom and pose exactly:

    fx_i = f · z_i,  fy_i = f · z_i · (fy₀ / fx₀)
    d_cam = ((x + ½ − cx) / fx_i, −(y + ½ − cy) / fy_i, −1)        (OpenGL camera: looks down −z)
    c2w_i = base_i · [exp(ω_i) | τ_i]                              (correction in the camera frame)

Wide and zoom-in poses are separate parameters (separate optimizer groups). Wide zooms are the
gauge of ``f`` and stay at their dial reading (1) unless ``learn_wide_zoom`` is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Type

import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.cameras.lie_groups import exp_map_SO3xR3
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn
from typing_extensions import assert_never

from mzen_ns.geometry.solution import GIVEN, IDENTITY_ASKED, Init
from mzen_ns.run_record import MatchRecord, RunRecord, WideStart

PIXELS_KEY = "mzen_pixels"
"""Ray-bundle metadata key holding each ray's (row, column) pixel indices."""


@dataclass
class ZoomCamerasConfig(InstantiateConfig):
    """Shared learnable focal, per-image learnable zoom and pose."""

    _target: Type = field(default_factory=lambda: ZoomCameras)
    """Class this config instantiates."""

    init: Init = "auto"
    """Wide cameras' start: ``sfm`` (COLMAP), ``rotation`` (one optical centre), ``identity`` or ``auto``."""
    use_pose_prior: bool = False
    """Start poses at the dataparser's cameras (its pose priors) instead of ``init``."""
    learn_wide_zoom: bool = False
    """Let wide zooms move in phase C too (they are the gauge of the focal; off by default)."""
    zoom_model: Literal["dial", "none"] = "dial"
    """``dial``: a learnable zoom per image from its dial reading; ``none``: every zoom fixed at 1 (zoom-unaware)."""
    ground_truth: bool = False
    """Oracle: fix poses, zooms and focal at the scene's ground truth (synthetic scenes; every frame needs it)."""


_IDENTITY = WideStart("identity", IDENTITY_ASKED)
_RENAMED = {"matched_wide": "match.root", "solved": "record.trained_on", "_extra_state": "record._extra_state"}
"""Keys of checkpoints that kept the run's record on the cameras themselves, and where they live now."""


class ZoomCameras(nn.Module):
    """Learnable intrinsics and poses of the training images, and exact ray generation."""

    def __init__(
        self,
        config: ZoomCamerasConfig,
        dials: Float[Tensor, " N"],
        is_wide: torch.Tensor,
        focal_guess: float,
        aspect: float,
        cx: Float[Tensor, " N"],
        cy: Float[Tensor, " N"],
        width: int,
        height: int,
        initial_c2w: Optional[Float[Tensor, "N 3 4"]] = None,
        initial_zoom: Optional[Float[Tensor, " N"]] = None,
    ) -> None:
        super().__init__()
        self.config = config
        count = dials.shape[0]
        self.register_buffer("dials", dials.float().clone())
        self.register_buffer("is_wide", is_wide.bool().clone())
        self.register_buffer("cx", cx.float().reshape(count).clone())
        self.register_buffer("cy", cy.float().reshape(count).clone())
        self.register_buffer("aspect", torch.tensor(float(aspect)))
        self.width, self.height = int(width), int(height)
        base = torch.eye(4)[:3].expand(count, 3, 4).clone()
        if (config.use_pose_prior or config.ground_truth) and initial_c2w is not None:
            base = initial_c2w.float().clone()
        self.register_buffer("base_c2w", base)
        wide_index = torch.nonzero(self.is_wide).squeeze(-1)
        zoom_index = torch.nonzero(~self.is_wide).squeeze(-1)
        self.register_buffer("wide_index", wide_index)
        self.register_buffer("zoom_index", zoom_index)
        slot = torch.empty(count, dtype=torch.long)
        slot[wide_index] = torch.arange(wide_index.numel())
        slot[zoom_index] = torch.arange(zoom_index.numel())
        self.register_buffer("slot", slot)
        self.log_focal = nn.Parameter(torch.tensor(math.log(focal_guess)))
        self.log_zoom = nn.Parameter(self.initial_zoom(initial_zoom).log())
        self.wide_pose = nn.Parameter(torch.zeros(wide_index.numel(), 6))
        self.zoom_pose = nn.Parameter(torch.zeros(zoom_index.numel(), 6))
        given = config.ground_truth or (config.use_pose_prior and initial_c2w is not None)
        self.record = RunRecord(
            count, WideStart.from_dict(GIVEN) if given else _IDENTITY if config.init == "identity" else None
        )
        """Where the wide cameras started and which images the run has trained on."""
        self.match = MatchRecord(count)
        """How each zoom-in was primed (root wide view, source, window, zoom, scores, flag)."""
        self._register_load_state_dict_pre_hook(_renamed_keys)
        for name, param in self.named_parameters():
            param.requires_grad_(name in self.learnable_names())
        self.held: Optional[Tensor] = None
        """Images whose pose and zoom training leaves alone (:meth:`hold`); ``None``: none."""

    def hold(self, images: Optional[Bool[Tensor, " N"]]) -> None:
        """Keep the pose and zoom of ``images`` where they are: their gradients are zeroed, so Adam
        never moves them (``None``: hold none)."""
        self.held = None if images is None or not bool(images.any()) else images.to(self.dials.device).bool()

    @torch.no_grad()
    def drop_held_gradients(self) -> None:
        """Zero the held images' rows of the zoom-in pose and zoom gradients (before an optimizer step)."""
        if self.held is None:
            return
        if self.zoom_pose.grad is not None:
            self.zoom_pose.grad[self.held[self.zoom_index]] = 0.0
        if self.log_zoom.grad is not None:
            self.log_zoom.grad[self.held] = 0.0

    @torch.no_grad()
    def start_wides(
        self,
        start: str,
        reason: str,
        c2w: Optional[Float[Tensor, "K 3 4"]] = None,
        focal: Optional[float] = None,
        focal_held: bool = False,
    ) -> None:
        """Record where the wide cameras start; a geometric start sets their poses (in wide order) and the
        focal. ``focal_held``: the focal is the scene's, kept because the views do not pin one (solvers
        run again for this run are given it)."""
        if c2w is not None:
            self.base_c2w[self.wide_index] = c2w.to(self.base_c2w)
            self.wide_pose.zero_()
        if focal is not None:
            self.log_focal.fill_(math.log(focal))
        self.record.start = WideStart(start, reason, "held" if focal_held else "solved")

    def initial_zoom(self, initial_zoom: Optional[Float[Tensor, " N"]] = None) -> Float[Tensor, " N"]:
        """Zooms before training: ``initial_zoom`` (the oracle's truth) or the dials; 1 if zoom-unaware."""
        if self.config.zoom_model == "none":
            return torch.ones_like(self.dials)
        if self.config.zoom_model == "dial":
            return initial_zoom.float().clone() if initial_zoom is not None else self.dials.clone()
        assert_never(self.config.zoom_model)

    def learnable_names(self) -> List[str]:
        """Parameters this configuration learns: none for the oracle; no zooms when zoom-unaware."""
        if self.config.ground_truth:
            return []
        names = ["log_focal", "wide_pose", "zoom_pose"]
        return names + ["log_zoom"] if self.config.zoom_model == "dial" else names

    # ------------------------------------------------------------------ parameters

    @property
    def focal(self) -> Tensor:
        """Learned base focal in pixels (widest level)."""
        return self.log_focal.exp()

    def zoom(self, indices: Optional[Int[Tensor, " R"]] = None) -> Float[Tensor, " R"]:
        """Learned zoom per image; wide zooms are held at their dial unless ``learn_wide_zoom``."""
        log_zoom = self.log_zoom if indices is None else self.log_zoom[indices]
        wide = self.is_wide if indices is None else self.is_wide[indices]
        if not self.config.learn_wide_zoom:
            log_zoom = torch.where(wide, log_zoom.detach(), log_zoom)
        return log_zoom.exp()

    def fx(self, indices: Optional[Int[Tensor, " R"]] = None) -> Float[Tensor, " R"]:
        """Learned focal fx in pixels per image (base focal × zoom)."""
        return self.focal * self.zoom(indices)

    def principal_points(self) -> Float[Tensor, "N 2"]:
        """Principal point (x, y) in pixels per image."""
        return torch.stack([self.cx, self.cy], dim=-1)

    def zoom_over_dial(self) -> Float[Tensor, " K"]:
        """Learned zoom over dial reading of every image whose zoom is learned (empty if none)."""
        if "log_zoom" not in self.learnable_names():
            return self.dials.new_zeros(0)
        learned = torch.ones_like(self.is_wide) if self.config.learn_wide_zoom else ~self.is_wide
        return (self.zoom() / self.dials)[learned].detach()

    def get_metrics_dict(self, metrics_dict: Dict[str, Tensor]) -> None:
        """Add the learned focal and the spread of :meth:`zoom_over_dial` to ``metrics_dict``."""
        metrics_dict["focal"] = self.focal.detach()
        ratio = self.zoom_over_dial()
        if ratio.numel():
            metrics_dict["zoom_over_dial_min"] = ratio.min()
            metrics_dict["zoom_over_dial_max"] = ratio.max()

    def pose_delta(self, indices: Int[Tensor, " R"]) -> Float[Tensor, "R 6"]:
        """SO3xR3 tangent (translation, rotation) per image, from the wide or zoom-in parameter."""
        slots = self.slot[indices]
        n_wide, n_zoom = self.wide_pose.shape[0], self.zoom_pose.shape[0]
        if n_zoom == 0:
            return self.wide_pose[slots]
        if n_wide == 0:
            return self.zoom_pose[slots]
        from_wide = self.wide_pose[slots.clamp(max=n_wide - 1)]
        from_zoom = self.zoom_pose[slots.clamp(max=n_zoom - 1)]
        return torch.where(self.is_wide[indices, None], from_wide, from_zoom)

    def c2w(self, indices: Optional[Int[Tensor, " R"]] = None) -> Float[Tensor, "R 3 4"]:
        """Learned camera-to-world matrices (OpenGL)."""
        if indices is None:
            indices = torch.arange(self.dials.shape[0], device=self.dials.device)
        delta = exp_map_SO3xR3(self.pose_delta(indices))
        base = self.base_c2w[indices]
        rotation = base[:, :, :3] @ delta[:, :, :3]
        translation = base[:, :, 3:] + base[:, :, :3] @ delta[:, :, 3:]
        return torch.cat([rotation, translation], dim=-1)

    def param_groups(self) -> Dict[str, List[nn.Parameter]]:
        """One optimizer group each: wide poses, zoom-in poses, focal, zooms (learnable ones only)."""
        groups = {"wide_poses": "wide_pose", "zoom_poses": "zoom_pose", "focal": "log_focal", "zooms": "log_zoom"}
        learnable = self.learnable_names()
        return {group: [getattr(self, name)] for group, name in groups.items() if name in learnable}

    # ------------------------------------------------------------------ rays

    def rays(
        self, camera_indices: Int[Tensor, " R"], pixels: Int[Tensor, "R 2"]
    ) -> tuple[Float[Tensor, "R 3"], Float[Tensor, "R 3"], Float[Tensor, "R 1"], Float[Tensor, "R 1"]]:
        """Origins, unit directions, camera-frame direction norms and pixel areas for pixels
        given as (row, column) integer indices of images ``camera_indices``."""
        fx = self.fx(camera_indices)
        fy = fx * self.aspect
        rows = pixels[:, 0].to(fx.dtype) + 0.5
        cols = pixels[:, 1].to(fx.dtype) + 0.5
        local = torch.stack(
            [(cols - self.cx[camera_indices]) / fx, -(rows - self.cy[camera_indices]) / fy, -torch.ones_like(fx)], -1
        )
        c2w = self.c2w(camera_indices)
        directions = (c2w[:, :, :3] @ local[:, :, None])[..., 0]
        norms = directions.norm(dim=-1, keepdim=True)
        return c2w[:, :, 3], directions / norms, local.norm(dim=-1, keepdim=True), (1.0 / (fx * fy))[:, None]

    def apply_to_raybundle(self, ray_bundle: RayBundle) -> RayBundle:
        """Replace a training ray bundle's geometry by rays from the learned cameras."""
        assert ray_bundle.camera_indices is not None and ray_bundle.metadata is not None
        camera_indices = ray_bundle.camera_indices[..., 0].long()
        origins, directions, norms, areas = self.rays(camera_indices, ray_bundle.metadata[PIXELS_KEY].long())
        metadata = dict(ray_bundle.metadata)
        metadata["directions_norm"] = norms
        return RayBundle(
            origins=origins,
            directions=directions,
            pixel_area=areas,
            camera_indices=ray_bundle.camera_indices,
            nears=ray_bundle.nears,
            fars=ray_bundle.fars,
            metadata=metadata,
            times=ray_bundle.times,
        )

    # ------------------------------------------------------------------ priming and export

    @torch.no_grad()
    def prime_from(
        self,
        indices: Int[Tensor, " Z"],
        c2w: Float[Tensor, "Z 3 4"],
        zoom: Float[Tensor, " Z"],
        wide: Int[Tensor, " Z"],
    ) -> None:
        """Start images ``indices`` at camera ``c2w`` and ``zoom`` (kept at 1 when zoom-unaware),
        primed from wide views ``wide``; their pose corrections restart at zero."""
        self.base_c2w[indices] = c2w.to(self.base_c2w)
        self.zoom_pose[self.slot[indices]] = 0.0
        if self.config.zoom_model != "none":
            self.log_zoom[indices] = zoom.to(self.log_zoom).log()
        self.match.set_root(indices, wide)

    @torch.no_grad()
    def to_cameras(self, indices: Optional[Int[Tensor, " R"]] = None) -> Cameras:
        """nerfstudio ``Cameras`` with the learned poses and intrinsics (for rendering and export)."""
        if indices is None:
            indices = torch.arange(self.dials.shape[0], device=self.dials.device)
        fx = self.fx(indices)
        return Cameras(
            camera_to_worlds=self.c2w(indices),
            fx=fx[:, None],
            fy=(fx * self.aspect)[:, None],
            cx=self.cx[indices, None],
            cy=self.cy[indices, None],
            width=self.width,
            height=self.height,
            camera_type=CameraType.PERSPECTIVE,
        )


def _renamed_keys(state_dict: Dict, prefix: str, *args) -> None:
    """Move a checkpoint's record keys from the cameras (as older checkpoints keep them) to
    :class:`RunRecord` and :class:`MatchRecord`."""
    for old, new in _RENAMED.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
