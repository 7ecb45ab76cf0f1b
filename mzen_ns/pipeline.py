"""The mzen pipeline: runs the phase schedule around nerfstudio's vanilla pipeline.

Before every training step, the phase of that step (a pure function of the step) is applied:
sampler restricted to the phase's images, groups frozen; before the first step the wide cameras
start where the initialiser's ladder says, and on first entering phase B (or C, when B is empty)
every zoom-in is placed once (:mod:`mzen_ns.placement` does both); when that leaves phase B nothing
to register, its steps go to phase C. Each phase ends with its summary (:mod:`mzen_ns.phase_report`)
and the last with the solved-camera export; what the run decides about its cameras is told as it is
decided (:mod:`mzen_ns.run_report`). The start and the priming live in the model's state, so a run
resumed mid-phase continues without solving or priming again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Type

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from rich.panel import Panel

from mzen_ns.datamanager import MZENDataManager, MZENDataManagerConfig, stack_images
from mzen_ns.evaluation.evaluate import evaluate
from mzen_ns.evaluation.registration import RegistrationConfig
from mzen_ns.geometry.solution import GEOMETRIC, GIVEN_BY_CHECKPOINT
from mzen_ns.model import MZENModel, MZENModelConfig
from mzen_ns.phase_report import PhaseReport
from mzen_ns.phases import PHASES, POLICY, Hold, Phase, PhaseSchedule, allowed_images, held_zoom_ins
from mzen_ns.placement import place_training_zoom_ins, recorded_plan, start_wide_cameras
from mzen_ns.priming.plan import PrimingConfig, PrimingPlan
from mzen_ns.run_record import WideStart
from mzen_ns.run_report import RunReport
from mzen_ns.solved_cameras import cameras_manifest
from mzen_ns.viewer import CameraPanel


@dataclass
class MZENPipelineConfig(VanillaPipelineConfig):
    """Vanilla pipeline + mzen's phase schedule."""

    _target: Type = field(default_factory=lambda: MZENPipeline)
    """Class this config instantiates."""

    datamanager: MZENDataManagerConfig = field(default_factory=MZENDataManagerConfig)
    """Phase-aware data manager."""
    model: MZENModelConfig = field(default_factory=MZENModelConfig)
    """nerfacto field + zoom-aware cameras."""
    priming: PrimingConfig = field(default_factory=PrimingConfig)
    """How zoom-ins (and, at evaluation, held-out views) are matched and primed."""
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    """How ``ns-eval`` registers held-out views before scoring them."""
    viewer_refresh_every: int = 50
    """Redraw the viewer's learned frustums and panel every this many steps (when a viewer runs)."""


class MZENPipeline(VanillaPipeline):
    """Applies the phase of each step; starts the cameras and places the zoom-ins once."""

    config: MZENPipelineConfig
    datamanager: MZENDataManager

    def __init__(
        self,
        config: MZENPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[torch.cuda.amp.GradScaler] = None,
    ):
        super().__init__(
            config, device, test_mode=test_mode, world_size=world_size, local_rank=local_rank, grad_scaler=grad_scaler
        )
        cameras = self.mzen_model.cameras
        n_wide, n_train = self.datamanager.train_dataparser_outputs.metadata.get(
            "mzen_scene_train_counts", (int(cameras.is_wide.sum()), cameras.dials.numel())
        )
        self.phase_schedule = PhaseSchedule.resolve(config.model.phases, config.model.total_steps, n_wide, n_train)
        self.phase: Optional[Phase] = None
        self.run_dir: Optional[Path] = None
        self.phase_report = PhaseReport()
        self.loaded_step: Optional[int] = None
        self.priming_seconds: Optional[float] = None
        """Wall time of placing the training zoom-ins (2D–3D and window search), once they are placed."""
        self.run_report = RunReport(
            self.datamanager.train_dataset,
            cameras.dials,
            config.model.phases.flagged_left_out,
            config.priming,
        )
        """What the run says about its cameras as they are decided (console and run folder)."""
        self.viewer_panel = CameraPanel(lambda: self)

    @property
    def mzen_model(self) -> MZENModel:
        """The model, unwrapped from DDP."""
        return self.model  # VanillaPipeline.model unwraps DDP

    # ------------------------------------------------------------------ phases

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        trainer = training_callback_attributes.trainer
        self.run_dir = Path(trainer.base_dir) if trainer is not None else None
        self.run_report.run_dir = self.run_dir
        if self.loaded_step is not None and bool(self.mzen_model.cameras.match.primed_images.any()):
            CONSOLE.print("priming, as recorded in the checkpoint:")  # a resumed run's folder is complete too
            self.run_report.priming(recorded_plan(self.mzen_model.cameras, self.config.priming))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.enter_phase_of))
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._maybe_final_summary))
        callbacks.append(
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                self._refresh_viewer,
                update_every_num_iters=self.config.viewer_refresh_every,
            )
        )
        return callbacks

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        super().load_pipeline(loaded_state, step)
        self.loaded_step = step
        cameras = self.mzen_model.cameras
        if cameras.record.start is None:  # a checkpoint's cameras are trained: never solved again on resume
            cameras.record.start = WideStart.from_dict(GIVEN_BY_CHECKPOINT)

    def _refresh_viewer(self, step: int) -> None:
        if self.viewer_panel.control.viewer is not None:
            self.viewer_panel.refresh(step)

    @property
    def geometric_hold(self) -> Hold:
        """What the phases hold of the cameras from geometry (:meth:`PhaseScheduleConfig.hold`)."""
        return self.config.model.phases.hold(self.mzen_model.cameras.record.rung in GEOMETRIC)

    def enter_phase_of(self, step: int) -> Phase:
        """Apply the phase of ``step`` (no-op when it is the current one)."""
        phase = self.phase_schedule.phase_at(step)
        if phase == self.phase:
            return phase
        if self.phase is not None:
            self.phase_report.close(self.phase, step, self.mzen_model.cameras)
        cameras = self.mzen_model.cameras
        if cameras.record.start is None:
            self.start_cameras()
        if phase != "A" and not cameras.match.primed(cameras.zoom_index) and self.config.model.phases.prime:
            self.prime_zoom_ins()
        if phase == "B" and self.nothing_to_register():
            self.phase_schedule = self.phase_schedule.without_registration()
            phase = self.phase_schedule.phase_at(step)
            if phase == "C":
                CONSOLE.print("[bold]phase B skipped:[/] every zoom-in is held where it was placed")
        allowed = allowed_images(phase, cameras.is_wide, self.config.model.phases.unverified(cameras.match.flagged))
        self.datamanager.set_allowed_images(allowed)
        cameras.record.trained_on |= allowed
        self.mzen_model.set_phase(phase, self.geometric_hold)
        cameras.hold(self.held_zoom_ins())
        self.phase = phase
        self.phase_report.restart()
        end = self.phase_schedule.end_of(phase)
        CONSOLE.print(Panel(f"{POLICY[phase].title}\nsteps {step} → {end - 1}", style="bold cyan", expand=False))
        self._refresh_viewer(step)
        return phase

    def held_zoom_ins(self) -> torch.Tensor:
        """The images the phases leave where priming put them (:func:`~mzen_ns.phases.held_zoom_ins`)."""
        match, refine_searched = self.mzen_model.cameras.match, self.config.model.phases.refine_searched
        return held_zoom_ins(self.geometric_hold, refine_searched, match.primed_images, match.geometric)

    def nothing_to_register(self) -> bool:
        """Whether phase B would step nothing: every zoom-in is held (the same answer on resume:
        placement and start are in the checkpoint)."""
        held = self.held_zoom_ins()[self.mzen_model.cameras.zoom_index]
        return held.numel() > 0 and bool(held.all())

    def start_cameras(self) -> None:
        """Start the wide cameras where the initialiser's ladder says (:func:`start_wide_cameras`) and
        say which rung won and why. Runs once: a resumed run keeps the start its checkpoint recorded."""
        model = self.config.model
        outputs = self.datamanager.train_dataparser_outputs
        decision = start_wide_cameras(self.mzen_model.cameras, outputs, model.world_frame, model.contraction_radius)
        self.run_report.wide_start(decision)

    def prime_zoom_ins(self) -> PrimingPlan:
        """Start every zoom-in (:func:`place_training_zoom_ins`: by 2D–3D registration after an ``sfm``
        start, the others by the window search of ``pipeline.priming``, the field trained in phase A
        deciding between rival placements) and say where and how sure."""
        started = time.perf_counter()
        images = stack_images(self.datamanager.train_dataset)
        outputs = self.datamanager.train_dataparser_outputs
        trained = self.phase_schedule.end_of("A") > 0
        plan = place_training_zoom_ins(self.mzen_model, images, outputs, self.config.priming, trained)
        self.priming_seconds = time.perf_counter() - started
        self.run_report.priming(plan, images, self.priming_seconds)
        return plan

    # ------------------------------------------------------------------ evaluation

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, float]:
        """``ns-eval``: register the held-out views (field frozen), then per-zoom metrics (with their
        spread over views) and camera errors against ground truth (:mod:`mzen_ns.evaluation.evaluate`);
        ground truth | render PNGs into ``output_path`` (``--render-output-path``) when given."""
        config = self.config
        return evaluate(
            self.mzen_model, self.datamanager, config.registration, config.priming, render_folder=output_path
        )

    # ------------------------------------------------------------------ progress

    def get_train_loss_dict(self, step: int):
        model_outputs, loss_dict, metrics_dict = super().get_train_loss_dict(step)
        if self.datamanager.samples_by_error:
            self.datamanager.record_errors(self.mzen_model.ray_errors(model_outputs, self.datamanager.last_batch))
        phase = self.phase or self.phase_schedule.phase_at(step)
        self.phase_report.add(loss_dict)
        metrics_dict["phase"] = torch.tensor(float(PHASES.index(phase)))
        for name, value in loss_dict.items():
            metrics_dict[f"phase_{phase}/{name}"] = value.detach()
        return model_outputs, loss_dict, metrics_dict

    def _maybe_final_summary(self, step: int) -> None:
        if step == self.phase_schedule.end - 1 and self.phase is not None:
            self.phase_report.close(self.phase, step + 1, self.mzen_model.cameras)
            self.export_cameras()

    def solved_cameras(self, output_dir: Path) -> Dict[str, Any]:
        """The learned cameras as a nerfstudio ``transforms.json`` whose paths are relative to ``output_dir``."""
        dataset = self.datamanager.train_dataset
        return cameras_manifest(
            self.mzen_model.cameras,
            [Path(p) for p in dataset.image_filenames],
            self.config.priming.method,
            output_dir,
            self.config.model.phases.flagged_left_out,
        )

    def export_cameras(self) -> Optional[Path]:
        """Write the solved cameras to ``<run>/solved_cameras/transforms.json`` (rank 0 only)."""
        return self.run_report.solved_cameras(self.solved_cameras)
