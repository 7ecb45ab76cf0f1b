"""``ns-train mzen`` presets (entry points ``nerfstudio.method_configs``).

- ``mzen``: the full-quality preset when a CUDA device is present, otherwise the CPU preset
  (decided when nerfstudio loads the method list, so ``ns-train mzen`` just works on a laptop).
- ``mzen-cpu``: the CPU preset by name: small hash grid, 1024 rays per step, device type CPU;
  finishes all three phases on the demo scene in 5–7 minutes on 2 cores.
- ``mzen-full``: the full-quality (GPU) preset by name.

The paper's comparison (``docs/method.md``, "Evaluation") as methods sharing mzen's field, sampler
and camera model, each with the ``mzen`` preset of this machine and the paper's equal-budget
accounting (the wide-only runs give each wide image the passes phase A gives it; the all-image
runs get the full budget, phase B's passes counted):

- ``mzen-baseline-wide`` (config 1): pose-free, only the wide frames are loaded, one phase.
- ``mzen-baseline-joint`` (config 2): pose-free, every image from step 0, zoom-unaware (every zoom
  is 1: no dial prior), no phases, no priming.
- ``mzen-phase-a`` (config 3): MZEN stopped after phase A.
- ``mzen`` (config 4): all three phases.
- ``mzen-oracle``: ground-truth poses, zooms and focal, fixed (synthetic scenes); the ceiling.
- ``mzen-oracle-zoom-ins``: the oracle trained on the zoom-in frames alone (no wide frame), a
  second reference: what the zoom-in pixels give by themselves at each level.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Literal, Optional, Tuple, Type

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification
from typing_extensions import assert_never

from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig
from mzen_ns import patches
from mzen_ns.datamanager import MZENDataManagerConfig
from mzen_ns.model import MZENModelConfig
from mzen_ns.phases import PhaseDecaySchedulerConfig
from mzen_ns.pipeline import MZENPipelineConfig
from mzen_ns.synthetic.demo import DEMO_DATA
from mzen_ns.trainer import MZENTrainerConfig

# nerfstudio imports this module when it loads its method list, before any command reads a run:
# from here on its commands read run configs and checkpoints with mzen's safe loaders.
patches.protect_run_loading()

Preset = Literal["auto", "cpu", "full", "smoke"]
"""``cpu`` and ``full`` (CUDA) are the registered presets, ``smoke`` a set-up check, ``auto`` picks by the machine."""


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """nerfstudio's Adam, stepping each group in torch's fused kernel: the same update as the
    per-tensor loop torch runs on the CPU by default, in one pass over the group's tensors."""

    _target: Type = torch.optim.Adam
    """The optimizer class."""
    fused: Optional[bool] = True
    """Torch's fused Adam kernel (None: torch's default, a per-tensor loop on the CPU)."""


def _optimizers(field_lr: float, pose_lr: float, focal_lr: float, zoom_lr: float, decay: float) -> Dict[str, Dict]:
    """Adam per group; every schedule starts when its group's first phase starts."""

    def group(lr: float, eps: float = 1e-15) -> Dict:
        return {
            "optimizer": FusedAdamOptimizerConfig(lr=lr, eps=eps),
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
            datamanager=MZENDataManagerConfig(
                dataparser=FFMZNDataParserConfig(data=DEMO_DATA),  # no --data: the demo scene, made on first use
                train_num_rays_per_batch=4096,
                eval_num_rays_per_batch=4096,
            ),
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
        num_proposal_samples_per_ray=(64, 32),  # one network (64): a quarter faster, 1 dB lower at 16×
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
        "all three phases take 5–7 minutes on 2 cores for the 128x96 demo scene.",
    )


Configuration = Literal["baseline-wide", "baseline-joint", "phase-a", "mzen", "oracle", "oracle-zoom-ins"]
CONFIGURATIONS: Tuple[Configuration, ...] = (
    "baseline-wide",
    "baseline-joint",
    "phase-a",
    "mzen",
    "oracle",
    "oracle-zoom-ins",
)
"""The comparison's configurations, in the paper's order (1, 2, 3, 4), then the oracle and the
oracle trained on the zoom-ins alone (what the zoom-in pixels can give by themselves)."""
ORACLES: Tuple[Configuration, ...] = ("oracle", "oracle-zoom-ins")
"""Configurations that need ground-truth cameras for every frame."""


def smoke_config() -> MZENTrainerConfig:
    """The CPU preset shrunk to milliseconds per step (tiny field, 64 rays, 40 steps): checks that a
    set-up runs end to end; its numbers mean nothing."""
    base = cpu_config()
    model = replace(
        base.pipeline.model,
        num_levels=4,
        log2_hashmap_size=10,
        max_res=64,
        hidden_dim=16,
        hidden_dim_color=16,
        num_proposal_samples_per_ray=(16, 8),
        num_nerf_samples_per_ray=8,
        eval_num_rays_per_chunk=1024,
    )
    datamanager = replace(base.pipeline.datamanager, train_num_rays_per_batch=64, eval_num_rays_per_batch=64)
    pipeline = replace(
        base.pipeline,
        model=model,
        datamanager=datamanager,
        registration=replace(base.pipeline.registration, steps=10, rays_per_step=64),
    )
    return replace(base, max_num_iterations=40, pipeline=pipeline, preset_note="smoke preset: set-up check only.")


def auto_preset() -> Literal["cpu", "full"]:
    """The preset for this machine: ``full`` when CUDA is available, else ``cpu``."""
    return "full" if torch.cuda.is_available() else "cpu"


def preset_config(preset: Preset) -> MZENTrainerConfig:
    """The CPU, full-quality or smoke-test preset, or this machine's (``auto``)."""
    if preset == "auto":
        return preset_config(auto_preset())
    if preset == "cpu":
        return cpu_config()
    if preset == "full":
        return full_config()
    if preset == "smoke":
        return smoke_config()
    assert_never(preset)


def configuration_config(configuration: Configuration, preset: Preset) -> MZENTrainerConfig:
    """One configuration of the comparison on a preset, named ``mzen-<configuration>``."""
    config = preset_config(preset)
    model, datamanager = config.pipeline.model, config.pipeline.datamanager
    if configuration == "mzen":
        return config
    if configuration == "phase-a":
        model.phases = replace(model.phases, stop_after="A")
    elif configuration == "baseline-wide":
        model.phases = replace(model.phases, stop_after="A")
        datamanager.dataparser = replace(datamanager.dataparser, train_levels="widest")
    elif configuration == "baseline-joint":
        model.phases = replace(model.phases, boundaries=(0.0, 0.0), prime=False)
        model.cameras = replace(model.cameras, zoom_model="none")
    elif configuration in ORACLES:
        model.phases = replace(model.phases, boundaries=(0.0, 0.0), prime=False)
        model.cameras = replace(model.cameras, ground_truth=True)
        if configuration == "oracle-zoom-ins":
            datamanager.dataparser = replace(datamanager.dataparser, train_levels="zoom-ins")
    else:
        assert_never(configuration)
    note = {
        "phase-a": "configuration 3 (MZEN after phase A, phase A's share of the budget). ",
        "baseline-wide": "configuration 1 (pose-free, wide frames only, phase A's share of the budget). ",
        "baseline-joint": "configuration 2 (pose-free, all frames jointly, zoom-unaware, full budget). ",
        "oracle": "oracle (ground-truth cameras, fixed; full budget). ",
        "oracle-zoom-ins": "oracle on the zoom-ins alone (ground-truth cameras, fixed; full budget). ",
    }[configuration]
    return replace(config, method_name=f"mzen-{configuration}", preset_note=note + config.preset_note)


DESCRIPTIONS = {
    "cpu": "MZEN, CPU preset (2 cores: 5–7 min on the demo scene; no GPU flags needed)",
    "full": "MZEN, full-quality preset for a CUDA GPU",
}

mzen_cpu = MethodSpecification(config=replace(cpu_config(), method_name="mzen-cpu"), description=DESCRIPTIONS["cpu"])
mzen_full = MethodSpecification(
    config=replace(full_config(), method_name="mzen-full"), description=DESCRIPTIONS["full"]
)
mzen = MethodSpecification(
    config=preset_config("auto"), description=f"{DESCRIPTIONS[auto_preset()]} (auto: chosen for this machine)"
)


def _configuration_method(configuration: Configuration, description: str) -> MethodSpecification:
    return MethodSpecification(
        config=configuration_config(configuration, "auto"), description=f"{description} ({auto_preset()} preset)"
    )


mzen_baseline_wide = _configuration_method("baseline-wide", "MZEN comparison, config 1: pose-free, wide frames only")
mzen_baseline_joint = _configuration_method(
    "baseline-joint", "MZEN comparison, config 2: pose-free, all frames jointly, zoom-unaware"
)
mzen_phase_a = _configuration_method("phase-a", "MZEN comparison, config 3: MZEN after phase A")
mzen_oracle = _configuration_method("oracle", "MZEN comparison: oracle with ground-truth cameras (synthetic scenes)")
mzen_oracle_zoom_ins = _configuration_method(
    "oracle-zoom-ins", "MZEN comparison: oracle trained on the zoom-ins alone (synthetic scenes)"
)
