"""The mzen pipeline: runs the phase schedule around nerfstudio's vanilla pipeline.

Before every training step, the phase of that step (a pure function of the step) is applied:
sampler restricted to the phase's images, groups frozen, and on first entering phase B (or C,
when B is empty) crop-and-match runs once and primes every zoom-in; when that leaves phase B
nothing to register, its steps go to phase C. The primed state lives in
the model's buffers, so a run resumed mid-phase continues without re-priming.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Type

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from rich.panel import Panel
from rich.table import Table

from mzen_ns.datamanager import MZENDataManager, MZENDataManagerConfig, stack_images
from mzen_ns.distributed import decided_once, is_main_process, share_decision
from mzen_ns.evaluation.evaluate import evaluate
from mzen_ns.evaluation.registration import RegistrationConfig
from mzen_ns.geometry.solution import GEOMETRIC, GIVEN_BY_CHECKPOINT
from mzen_ns.model import MZENModel, MZENModelConfig
from mzen_ns.phases import PHASES, POLICY, Hold, Phase, PhaseSchedule, allowed_images
from mzen_ns.priming.plan import (
    PrimingConfig,
    PrimingPlan,
    Views,
    apply_plan,
    empty_plan,
    placed_plan,
    plan_priming,
    score_kind,
)
from mzen_ns.priming.report import flagged_names, plan_rows, plan_table, save_plan_picture
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
    """Applies the phase of each step; primes zoom-ins once by crop-and-match."""

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
        self._loss_sums: Dict[str, torch.Tensor] = {}
        self._loss_count = 0
        self._phase_started = time.perf_counter()
        self.loaded_step: Optional[int] = None
        self.priming_seconds: Optional[float] = None
        """Wall time of placing the training zoom-ins (2D–3D and window search), once they are placed."""
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
        if self.loaded_step is not None and bool((self.mzen_model.cameras.match.source >= 0).any()):
            CONSOLE.print("priming, as recorded in the checkpoint:")  # a resumed run's folder is complete too
            self._report_plan(self.recorded_plan())
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
        if cameras.start is None:  # a checkpoint's cameras are trained: never solved again on resume
            cameras.start = dict(GIVEN_BY_CHECKPOINT)

    def _refresh_viewer(self, step: int) -> None:
        if self.viewer_panel.control.viewer is not None:
            self.viewer_panel.refresh(step)

    @property
    def geometric_hold(self) -> Hold:
        """What the phases hold of the cameras from geometry (:meth:`PhaseScheduleConfig.hold`)."""
        start = self.mzen_model.cameras.start
        return self.config.model.phases.hold(start is not None and start["start"] in GEOMETRIC)

    def enter_phase_of(self, step: int) -> Phase:
        """Apply the phase of ``step`` (no-op when it is the current one)."""
        phase = self.phase_schedule.phase_at(step)
        if phase == self.phase:
            return phase
        if self.phase is not None:
            self._summarise(self.phase, step)
        cameras = self.mzen_model.cameras
        if cameras.start is None:
            self.start_cameras()
        if phase != "A" and not cameras.primed and self.config.model.phases.prime:
            self.prime_zoom_ins()
        if phase == "B" and self.nothing_to_register():
            self.phase_schedule = self.phase_schedule.without_registration()
            phase = self.phase_schedule.phase_at(step)
            if phase == "C":
                CONSOLE.print("[bold]phase B skipped:[/] every zoom-in is held where it was placed")
        allowed = allowed_images(phase, cameras.is_wide, self.config.model.phases.unverified(cameras.match.flagged))
        self.datamanager.set_allowed_images(allowed)
        cameras.solved |= allowed
        self.mzen_model.set_phase(phase, self.geometric_hold)
        cameras.hold(self.held_zoom_ins())
        self.phase = phase
        self._phase_started = time.perf_counter()
        end = self.phase_schedule.end_of(phase)
        CONSOLE.print(Panel(f"{POLICY[phase].title}\nsteps {step} → {end - 1}", style="bold cyan", expand=False))
        self._refresh_viewer(step)
        return phase

    def held_zoom_ins(self) -> torch.Tensor:
        """The images whose pose and zoom the phases leave where priming put them, when cameras from
        geometry are held: the zoom-ins placed by geometry, and every primed zoom-in unless those placed
        by the window search are refined (``phases.refine-searched``). Otherwise none: wide cameras
        that move take their zoom-ins along."""
        record = self.mzen_model.cameras.match
        if self.geometric_hold != "always":
            return torch.zeros_like(record.geometric)
        if self.config.model.phases.refine_searched:
            return record.geometric.clone()
        return record.source >= 0

    def nothing_to_register(self) -> bool:
        """Whether phase B would step nothing: every zoom-in is held (the same answer on resume:
        placement and start are in the checkpoint)."""
        cameras = self.mzen_model.cameras
        held = self.held_zoom_ins()[cameras.zoom_index]
        return held.numel() > 0 and bool(held.all())

    def start_cameras(self) -> None:
        """Start the wide cameras where the initialiser's ladder says (``cameras.init``), in the world
        frame chosen from the recovered geometry; say which rung won and why (console and
        ``initialiser.json``). Runs once: a resumed run keeps the start its checkpoint recorded."""
        from mzen_ns.geometry.ladder import (  # OpenCV and pycolmap only when solving
            choose,
            decision_record,
            world_frame,
        )

        cameras = self.mzen_model.cameras
        outputs = self.datamanager.train_dataparser_outputs
        metadata = outputs.metadata
        paths = [Path(outputs.image_filenames[i]) for i in cameras.wide_index.tolist()]
        focal_prior = float(metadata["mzen_focal_guess"][0]) if metadata.get("mzen_focal_known") else None
        decision = decided_once(  # one answer for every process, solved on rank 0
            lambda: choose(cameras.config.init, paths, cameras.width, focal_prior, metadata["mzen_principal_point"])
        )
        if decision.solution is None:
            cameras.start_wides(decision.start, decision.reason)
        else:
            frame = "camera" if self.config.model.parameterisation == "ndc" else "content"
            c2w, _, _ = world_frame(decision.solution, frame, self.config.model.contraction_radius)
            focal = decision.solution.focal
            c2w = torch.from_numpy(c2w).float()
            cameras.start_wides(decision.start, decision.reason, c2w, focal, decision.focal_held)
        CONSOLE.print(f"[bold]wide cameras start from {decision.start}:[/] {decision.reason}")
        if decision.caveat is not None:
            CONSOLE.print(f"[bold yellow]Focal: {decision.caveat}")
        if self.run_dir is not None and is_main_process():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "initialiser.json").write_text(json.dumps(decision_record(decision), indent=2))

    def prime_zoom_ins(self) -> PrimingPlan:
        """Start every zoom-in: registered against the wide views' 3D points where the run started
        from structure from motion (:meth:`place_zoom_ins`), the others where the window search
        (``pipeline.priming``) places them; say where and how sure (console table,
        ``crop_and_match.png`` and ``crop_and_match.json``)."""
        started = time.perf_counter()
        dataset = self.datamanager.train_dataset
        cameras = self.mzen_model.cameras
        device = cameras.dials.device
        placed = self.place_zoom_ins()
        views = Views(
            stack_images(dataset),
            cameras.dials.cpu(),
            cameras.principal_points().cpu(),
            cameras.fx().detach().cpu(),
            float(cameras.aspect),
            cameras.c2w()[:, :, :3].detach().cpu(),
        )
        posed, roots = cameras.is_wide.cpu().clone(), torch.arange(len(views))
        posed[placed.query], roots[placed.query] = True, placed.root
        plan = plan_priming(views, posed, roots, self.config.priming)
        for name in ("source", "root", "centre", "relative_zoom", "rotation"):  # decided once, on rank 0
            setattr(plan, name, share_decision(getattr(plan, name), self.device))
        apply_plan(
            plan,
            views.dials,
            lookup=lambda i: (cameras.c2w(i.to(device)), cameras.zoom(i.to(device))),
            assign=lambda i, c2w, zoom, wide: cameras.prime_from(i.to(device), c2w, zoom, wide),
        )
        plan = placed.cat(plan)
        cameras.match.record(plan.query, **{name: getattr(plan, name) for name in cameras.match.FIELDS})
        self._copy_appearance(plan.query.to(device), plan.root.to(device))
        self.priming_seconds = time.perf_counter() - started
        CONSOLE.print(f"placed {plan.query.numel()} zoom-in(s) in {self.priming_seconds:.1f} s")
        self._report_plan(plan, views.images)
        return plan

    def place_zoom_ins(self) -> PrimingPlan:
        """Zoom-ins registered against a structure-from-motion model of the wide views, started
        there (:func:`~mzen_ns.geometry.locate.locate`): the rows of the priming plan they fill
        (none when the run did not start from ``sfm`` or ``priming.geometry`` is off)."""
        cameras = self.mzen_model.cameras
        kind = score_kind(self.config.priming.method)
        start = cameras.start["start"] if cameras.start is not None else None
        if not self.config.priming.geometry or start != "sfm" or cameras.zoom_index.numel() == 0:
            return empty_plan(kind)
        from mzen_ns.geometry.locate import locate  # pycolmap only when solving

        outputs = self.datamanager.train_dataparser_outputs
        wide, zoom_ins = cameras.wide_index.cpu(), cameras.zoom_index.cpu()
        located = decided_once(  # one answer for every process, solved on rank 0
            lambda: locate(
                "sfm",
                [Path(outputs.image_filenames[i]) for i in wide.tolist()],
                cameras.c2w(cameras.wide_index).detach().cpu().double().numpy(),
                zoom_ins=[(Path(outputs.image_filenames[i]), float(cameras.dials[i])) for i in zoom_ins.tolist()],
                principal_point=outputs.metadata["mzen_principal_point"],
                focal_prior=float(cameras.focal) if cameras.focal_held else None,
            )
        )
        CONSOLE.print(f"zoom-ins by geometry: {located.reason}")
        views = located.views
        c2w, zoom = torch.from_numpy(views.c2w).float(), torch.from_numpy(views.zoom).float()
        source = torch.from_numpy(views.source).long()
        found = torch.isfinite(c2w).all(dim=(1, 2))
        query, source = zoom_ins[found], wide[source[found].clamp(min=0)]
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

    def recorded_plan(self) -> PrimingPlan:
        """The priming of the training images as the cameras recorded it (rotations not kept)."""
        cameras = self.mzen_model.cameras
        record = cameras.match
        dials = cameras.dials.cpu()
        query = torch.nonzero(record.source.cpu() >= 0).squeeze(-1)
        query = query[torch.argsort(dials[query], stable=True)]  # shallowest first, as planned
        runner_up = torch.where(record.has_runner_up, record.runner_up, torch.full_like(record.runner_up, -math.inf))
        return PrimingPlan(
            query=query,
            source=record.source.cpu()[query],
            root=cameras.matched_wide.cpu()[query],
            centre=record.centre.cpu()[query],
            relative_zoom=record.relative_zoom.cpu()[query],
            rotation=torch.eye(3).expand(query.numel(), 3, 3),
            score=record.score.cpu()[query],
            runner_up=runner_up.cpu()[query],
            flagged=record.flagged.cpu()[query],
            score_kind=score_kind(self.config.priming.method),
            geometric=record.geometric.cpu()[query],
        )

    def _report_plan(self, plan: PrimingPlan, images: Optional[torch.Tensor] = None) -> None:
        """The priming table and flagged zoom-ins on the console; picture and JSON in the run folder
        (``images``: the training images, when already stacked)."""
        dataset = self.datamanager.train_dataset
        names = [str(p) for p in dataset.metadata["mzen_file_paths"]]
        dials = self.mzen_model.cameras.dials.cpu()
        CONSOLE.print(plan_table(plan, names, dials))
        flagged = flagged_names(plan, names)
        left_out = self.config.model.phases.flagged_left_out
        if flagged:
            fate = "left out of the field (phase C)" if left_out else "primed from the best anyway"
            CONSOLE.print(
                f"[bold yellow]Priming: {len(flagged)} zoom-in(s) have no clear best match (another part of the "
                f"scene fits within {self.config.priming.flag_margin:.0%} as well); {fate}, check them: "
                f"{', '.join(flagged)}"
            )
        if self.run_dir is not None and is_main_process():
            images = images if images is not None else stack_images(dataset)
            picture = save_plan_picture(plan, images, self.run_dir / "crop_and_match.png", names, left_out)
            rows = plan_rows(plan, names, dials, left_out)
            (self.run_dir / "crop_and_match.json").write_text(json.dumps(rows, indent=2))
            CONSOLE.print(f"priming picture: {picture}")

    @torch.no_grad()
    def _copy_appearance(self, zoom_idx: torch.Tensor, wide_idx: torch.Tensor) -> None:
        embedding = getattr(self.mzen_model.field, "embedding_appearance", None)
        if embedding is not None:
            weight = embedding.embedding.weight
            weight[zoom_idx] = weight[wide_idx]

    # ------------------------------------------------------------------ evaluation

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, float]:
        """``ns-eval``: register the held-out views (field frozen), then per-zoom metrics (with their
        spread over views) and camera errors against ground truth (:mod:`mzen_ns.evaluation.evaluate`);
        ground truth | render PNGs into ``output_path`` (``--render-output-path``) when given."""
        return evaluate(self, self.config.registration, self.config.priming, render_folder=output_path)

    # ------------------------------------------------------------------ progress

    def get_train_loss_dict(self, step: int):
        model_outputs, loss_dict, metrics_dict = super().get_train_loss_dict(step)
        phase = self.phase or self.phase_schedule.phase_at(step)
        for name, value in loss_dict.items():  # summed on the device; read once per phase
            self._loss_sums[name] = self._loss_sums.get(name, 0.0) + value.detach()
        self._loss_count += 1
        metrics_dict["phase"] = torch.tensor(float(PHASES.index(phase)))
        for name, value in loss_dict.items():
            metrics_dict[f"phase_{phase}/{name}"] = value.detach()
        return model_outputs, loss_dict, metrics_dict

    def _summarise(self, phase: Phase, step: int) -> None:
        cameras: Dict[str, torch.Tensor] = {}
        self.mzen_model.cameras.get_metrics_dict(cameras)
        table = Table(title=f"phase {phase} summary (ended before step {step})")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for name, total in sorted(self._loss_sums.items()):
            mean = float(total) / max(self._loss_count, 1)
            table.add_row(f"mean {name}", f"{mean:.5f}")
            writer.put_scalar(name=f"phase_summary/{phase}/{name}", scalar=mean, step=step)
        start = self.mzen_model.cameras.start
        if start is not None:
            table.add_row("wide cameras started from", start["start"])
        table.add_row("learned focal (px)", f"{float(cameras['focal']):.2f}")
        if "zoom_over_dial_min" in cameras:
            spread = f"{float(cameras['zoom_over_dial_min']):.4f}, {float(cameras['zoom_over_dial_max']):.4f}"
            table.add_row("zoom / dial (min, max)", spread)
        table.add_row("wall time (s)", f"{time.perf_counter() - self._phase_started:.1f}")
        CONSOLE.print(table)
        self._loss_sums.clear()
        self._loss_count = 0

    def _maybe_final_summary(self, step: int) -> None:
        if step == self.phase_schedule.end - 1 and self.phase is not None:
            self._summarise(self.phase, step + 1)
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
        if self.run_dir is None or not is_main_process():
            return None
        path = self.run_dir / "solved_cameras" / "transforms.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.solved_cameras(path.parent), indent=2))
        CONSOLE.print(f"solved cameras: {path}  (any method: ns-train nerfacto --data {path.parent})")
        return path
