"""``ns-train mzen`` presets (entry points ``nerfstudio.method_configs``).

- ``mzen``: the full-quality preset when a CUDA device is present, otherwise the CPU preset
  (decided when nerfstudio loads the method list, so ``ns-train mzen`` just works on a laptop).
- ``mzen-cpu``: the CPU preset by name: small hash grid, 1024 rays per step, device type CPU;
  finishes all three phases on the demo scene in about 10 minutes on 2 cores.
- ``mzen-full``: the full-quality (GPU) preset by name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from mzen_ns.datamanager import MZENDataManagerConfig
from mzen_ns.model import MZENModelConfig
from mzen_ns.phases import PhaseDecaySchedulerConfig
from mzen_ns.pipeline import MZENPipelineConfig
from mzen_ns.trainer import MZENTrainerConfig


def _optimizers(field_lr: float, pose_lr: float, focal_lr: float, zoom_lr: float, decay: float) -> Dict[str, Dict]:
    """Adam per group; every schedule starts when its group's first phase starts."""

    def group(lr: float, eps: float = 1e-15) -> Dict:
        return {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=eps),
            "scheduler": PhaseDecaySchedulerConfig(lr_final=lr * decay, warmup_steps=0),
        }

    return {
        "proposal_networks": group(field_lr),
        "fields": group(field_lr),
        "wide_poses": group(pose_lr, 1e-8),
        "zoom_poses": group(pose_lr, 1e-8),
        "focal": group(focal_lr, 1e-8),
        "zooms": group(zoom_lr, 1e-8),
    }


def full_config() -> MZENTrainerConfig:
    """Full quality, for a CUDA GPU."""
    return MZENTrainerConfig(
        method_name="mzen",
        steps_per_eval_batch=10**9,
        steps_per_eval_image=10**9,
        steps_per_eval_all_images=10**9,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=MZENPipelineConfig(
            datamanager=MZENDataManagerConfig(train_num_rays_per_batch=4096, eval_num_rays_per_batch=4096),
            model=MZENModelConfig(eval_num_rays_per_chunk=1 << 15),
        ),
        optimizers=_optimizers(field_lr=1e-2, pose_lr=1e-3, focal_lr=1e-3, zoom_lr=1e-3, decay=0.01),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15, quit_on_train_completion=True),
        vis="viewer",
        preset_note="full-quality preset for a CUDA GPU: 30000 steps of 4096 rays.",
    )


def cpu_config() -> MZENTrainerConfig:
    """Small and quick enough to finish the demo scene on 2 CPU cores in under 15 minutes."""
    full = full_config()
    model = replace(
        full.pipeline.model,
        num_levels=12,
        log2_hashmap_size=17,
        max_res=1024,
        num_proposal_samples_per_ray=(64, 32),
        num_nerf_samples_per_ray=24,
        eval_num_rays_per_chunk=4096,
    )
    datamanager = replace(full.pipeline.datamanager, train_num_rays_per_batch=1024, eval_num_rays_per_batch=1024)
    return replace(
        full,
        method_name="mzen",
        max_num_iterations=1800,
        steps_per_save=300,
        mixed_precision=False,
        machine=MachineConfig(device_type="cpu"),
        pipeline=replace(full.pipeline, model=model, datamanager=datamanager),
        optimizers=_optimizers(field_lr=1e-2, pose_lr=3e-3, focal_lr=3e-3, zoom_lr=2e-3, decay=0.05),
        viewer=ViewerConfig(num_rays_per_chunk=4096, quit_on_train_completion=True),
        preset_note="CPU preset (no CUDA device needed): 1800 steps of 1024 rays, small hash grid; "
        "all three phases take about 10 minutes on 2 cores for the 128x96 demo scene.",
    )


CPU_DESCRIPTION = "MZEN, CPU preset (2 cores: ~10 min on the demo scene; no GPU flags needed)"
FULL_DESCRIPTION = "MZEN, full-quality preset for a CUDA GPU"

mzen_cpu = MethodSpecification(config=replace(cpu_config(), method_name="mzen-cpu"), description=CPU_DESCRIPTION)
mzen_full = MethodSpecification(config=replace(full_config(), method_name="mzen-full"), description=FULL_DESCRIPTION)
mzen = MethodSpecification(
    config=full_config() if torch.cuda.is_available() else cpu_config(),
    description=FULL_DESCRIPTION if torch.cuda.is_available() else CPU_DESCRIPTION + " (auto: no CUDA device)",
)
