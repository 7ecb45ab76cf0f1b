"""The mzen model: nerfacto's hash-grid field and proposal networks, rays from the zoom-aware
camera model, parameters that really freeze per phase, and LPIPS only from cached weights."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
import tyro
from jaxtyping import Float
from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

from mzen_ns.cameras import PIXELS_KEY, ZoomCameras, ZoomCamerasConfig
from mzen_ns.encoding import (
    Footprint,
    FootprintHook,
    LevelCurriculumConfig,
    STEMode,
    use_smooth_gradient_encodings,
)
from mzen_ns.evaluation.metrics import gss, lss
from mzen_ns.geometry.solution import Frame, WorldFrame, choose_world_frame
from mzen_ns.patches import alexnet_weights_path, lpips_only_if_cached
from mzen_ns.phases import Hold, Phase, PhaseScheduleConfig, steps
from mzen_ns.scene_space import Parameterisation, finest_resolution, make_scene_space, use_scene_space


@dataclass
class MZENModelConfig(NerfactoModelConfig):
    """nerfacto's field with MZEN's camera model and phase schedule."""

    _target: Type = field(default_factory=lambda: MZENModel)
    """Class this config instantiates."""

    camera_optimizer: tyro.conf.Suppress[CameraOptimizerConfig] = field(
        default_factory=lambda: CameraOptimizerConfig(mode="off")
    )
    """nerfstudio's stock camera optimizer: off (mzen's camera model replaces it)."""
    cameras: ZoomCamerasConfig = field(default_factory=ZoomCamerasConfig)
    """Learnable focal, zooms and poses."""
    phases: PhaseScheduleConfig = field(default_factory=PhaseScheduleConfig)
    """Phase boundaries."""
    implementation: Literal["tcnn", "torch"] = "torch"
    """Hash-grid implementation; ``tcnn`` needs ``hash_ste_lambda 0`` and ``footprint point`` (it hides both)."""
    hash_ste_lambda: float = 1.0
    """λ of the smooth-gradient estimator on the hash grids' interpolation weights (Heo et al.; 0: plain grids)."""
    hash_ste_mode: STEMode = "paper"
    """``paper``: Heo et al.'s Eq. 13, gradient 1 + λδ'(w); ``smooth``: gradient λδ'(w) only (continuous)."""
    fused_cpu_grid: bool = True
    """Run CPU hash grids through the fused C++ kernel (same values and gradients; built at first use)."""
    footprint: Footprint = "downweight"
    """``downweight``: hash levels weighed by how well each sample's pixel footprint resolves them; ``point``: not."""
    hash_curriculum: LevelCurriculumConfig = field(default_factory=LevelCurriculumConfig)
    """Level-wise learning-rate curriculum of the hash tables in the pose-learning phases."""
    parameterisation: Parameterisation = "contraction"
    """Scene parameterisation before the hash grids: nerfacto's contraction, or the reference camera's NDC."""
    contraction_radius: float = 1.0
    """Scene units from the origin that stay uncontracted (nerfacto: 1)."""
    ndc_near: float = 0.5
    """NDC's near plane (scene units); nothing nearer the reference camera is represented."""
    max_res: Optional[int] = None
    """Finest resolution of the field's hash grid; None: one cell per pixel of the deepest zoom-in at the content."""
    appearance_embed_dim: int = 0
    """Per-image appearance code size (nerfacto: 32); 0: none, so no image is fitted by a code a held-out view lacks."""
    total_steps: tyro.conf.Suppress[int] = 30000
    """Total training steps (copied from the trainer's max_num_iterations)."""

    @property
    def world_frame(self) -> Frame:
        """The world frame wide cameras from geometry start in: the reference camera's under NDC (it
        parameterises space from that camera), else the content's (centred for the contraction)."""
        return "camera" if self.parameterisation == "ndc" else "content"


def oracle_world_frame(truth: Dict, frame: Frame, contraction_radius: float) -> WorldFrame:
    """The world frame an oracle trains in: chosen from the training images' ground truth
    (``truth``: the first image's true camera the reference, the true surface points they see) by the
    rule a run from geometry follows (:func:`~mzen_ns.geometry.initialiser.choose_world_frame`), so
    the oracle's content sits where a run's does, inside the grid's best-resolved region."""
    seen = [points.numpy().reshape(-1, 3) for points in truth.get("points", []) if points is not None]
    points = np.concatenate(seen) if seen else np.zeros((0, 3))
    return choose_world_frame(truth["c2w"][0, :3, :].double().numpy(), points, frame, contraction_radius)


def _oracle_cameras(metadata: Dict, frame: WorldFrame) -> Tuple[Tensor, Tensor, float]:
    """Ground-truth c2w (in the oracle's world ``frame``), zooms and base focal of the training images
    (the oracle's cameras)."""
    truth = metadata["mzen_ground_truth"]
    names = metadata["mzen_file_paths"]
    for i, name in enumerate(names):
        if not bool(torch.isfinite(truth["c2w"][i]).all()) or not bool(torch.isfinite(truth["zoom"][i])):
            raise ValueError(
                f"the oracle needs ground truth for every frame; {name} has no gt_transform_matrix/gt_zoom"
            )
    if not truth.get("focal"):
        raise ValueError("the oracle needs the scene's gt_focal")
    c2w = torch.from_numpy(frame.cameras(truth["c2w"][:, :3, :].double().numpy())).float()
    return c2w, truth["zoom"].float(), float(truth["focal"])


class MZENModel(NerfactoModel):
    """nerfacto whose training rays come from :class:`ZoomCameras`."""

    config: MZENModelConfig
    cameras: ZoomCameras

    def populate_modules(self) -> None:
        if self.config.max_res is None:
            self.config = replace(self.config, max_res=self._finest_resolution())
        with lpips_only_if_cached() as available:
            super().populate_modules()
        self.lpips_available = available
        self._use_scene_space()
        needs_torch_grid = bool(self.config.hash_ste_lambda) or self.config.footprint != "point"
        if needs_torch_grid or self.config.fused_cpu_grid:
            swapped = use_smooth_gradient_encodings(
                self, self.config.hash_ste_lambda, self.config.hash_ste_mode, fused=self.config.fused_cpu_grid
            )
            if swapped == 0 and needs_torch_grid:
                raise ValueError(
                    "hash_ste_lambda > 0 and footprint 'downweight' need the torch hash grid: set implementation "
                    "'torch' (or hash_ste_lambda 0 and footprint 'point' to use tinycudann)"
                )
        if self.config.footprint == "downweight":
            self.footprint_hook = FootprintHook(self.field)
        if not available:
            CONSOLE.print(f"[yellow]LPIPS unavailable: AlexNet weights are not cached at {alexnet_weights_path()}")
        self.cameras = self._build_cameras()

    def _finest_resolution(self) -> int:
        """The field's finest grid resolution for this scene (:func:`finest_resolution`), said on the console."""
        metadata = self.kwargs["metadata"]
        width, deepest = int(metadata["mzen_image_size"][0]), float(metadata["mzen_dial"].max())
        resolution = finest_resolution(self.config.parameterisation, width, deepest, self.config.base_res)
        CONSOLE.print(
            f"field's finest grid resolution {resolution}: one cell per pixel of the deepest zoom-in "
            f"({deepest:g}× on {width}-pixel-wide views) at the content"
        )
        return resolution

    def _use_scene_space(self) -> None:
        """Swap nerfacto's contraction for the configured parameterisation (fields and proposals)."""
        if self.config.disable_scene_contraction:
            raise ValueError("mzen's fields need a scene parameterisation: keep disable_scene_contraction False")
        fx, fy = self.kwargs["metadata"]["mzen_focal_guess"]
        width, height = self.kwargs["metadata"]["mzen_image_size"]
        space = make_scene_space(
            self.config.parameterisation,
            contraction_radius=self.config.contraction_radius,
            ndc_near=self.config.ndc_near,
            tan_half_fov=(0.5 * width / fx, 0.5 * height / fy),
        )
        use_scene_space(self, space)

    def _build_cameras(self) -> ZoomCameras:
        metadata = self.kwargs["metadata"]
        dials = metadata["mzen_dial"].float()
        fx, fy = metadata["mzen_focal_guess"]
        aspect = float(fy) / float(fx)  # the pixels' shape: the same whichever focal the cameras start from
        width, height = metadata["mzen_image_size"]
        cx, cy = metadata["mzen_principal_point"]
        prior = metadata.get("mzen_pose_prior")
        initial_zoom = None
        if self.config.cameras.ground_truth:
            prior, initial_zoom, fx = _oracle_cameras(metadata, self.oracle_frame())
        return self.config.cameras.setup(
            dials=dials,
            is_wide=metadata["mzen_level"] == 0,
            focal_guess=float(fx),
            aspect=aspect,
            cx=torch.full_like(dials, float(cx)),
            cy=torch.full_like(dials, float(cy)),
            width=width,
            height=height,
            initial_c2w=None if prior is None else prior[:, :3, :],
            initial_zoom=initial_zoom,
        )

    def oracle_frame(self) -> WorldFrame:
        """The world frame of an oracle on this model's training images (:func:`oracle_world_frame`)."""
        truth = self.kwargs["metadata"]["mzen_ground_truth"]
        return oracle_world_frame(truth, self.config.world_frame, self.config.contraction_radius)

    def get_param_groups(self) -> Dict[str, List[nn.Parameter]]:
        groups = super().get_param_groups()
        groups.update(self.cameras.param_groups())
        return groups

    def set_phase(self, phase: Phase, hold: Hold = "none") -> None:
        """Freeze (``requires_grad = False``) every group the phase does not step
        (:func:`~mzen_ns.phases.steps`)."""
        for group, params in self.get_param_groups().items():
            for param in params:
                param.requires_grad_(steps(phase, group, hold))

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        if self.training and ray_bundle.metadata is not None and PIXELS_KEY in ray_bundle.metadata:
            ray_bundle = self.cameras.apply_to_raybundle(ray_bundle)
        return super().get_outputs(ray_bundle)

    @torch.no_grad()
    def render_rgb(self, camera: Cameras) -> Float[Tensor, "H W 3"]:
        """RGB in [0, 1] the field shows through ``camera`` (one nerfstudio camera), rendered in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.get_outputs_for_camera(camera)["rgb"].clamp(0.0, 1.0)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def ray_errors(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Float[Tensor, " R"]:
        """Each training ray's squared colour error, mean over channels, as the RGB loss sees it."""
        truth = batch["image"].to(self.device)
        predicted, truth = self.renderer_rgb.blend_background_for_loss_computation(
            pred_image=outputs["rgb"], pred_accumulation=outputs["accumulation"], gt_image=truth
        )
        return (predicted - truth).square().mean(dim=-1)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        self.cameras.get_metrics_dict(metrics)
        return metrics

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if not self.lpips_available:
            metrics.pop("lpips", None)  # unavailable: reported as such, never a made-up number
        reference = self.renderer_rgb.blend_background(batch["image"].to(self.device))
        metrics["gss"] = float(gss(reference, outputs["rgb"])[0])
        metrics["lss"] = float(lss(reference, outputs["rgb"])[0])
        return metrics, images
