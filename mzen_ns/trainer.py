"""The mzen trainer: per-phase optimizer groups that really freeze, safe checkpoint loading, and
runs that stop cleanly (with a checkpoint) on a non-finite loss or a crash."""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
import tyro
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from mzen_ns import patches, run_files
from mzen_ns.encoding import LevelCurriculum
from mzen_ns.phases import POLICY, PhaseDecaySchedulerConfig, check_sanity, steps
from mzen_ns.pipeline import MZENPipeline, MZENPipelineConfig

patches.allow_checkpoint_types()  # loading any mzen run imports this module: its checkpoints load safely


class NonFiniteError(RuntimeError):
    """A loss, gradient or camera parameter became NaN or infinite."""


class PhasedOptimizers(Optimizers):
    """nerfstudio's optimizers, stepping only the groups the current phase trains.

    A frozen group gets no ``step()``: its parameters and its optimizer state (momentum) stay
    bit-identical. Gradients are checked before any step, so a non-finite value stops the run
    while the parameters are still good.
    """

    def __init__(self, config: Dict, param_groups: Dict[str, List[torch.nn.Parameter]], pipeline: MZENPipeline):
        super().__init__(config, param_groups)
        self.pipeline = pipeline

    def active(self) -> frozenset:
        """Names of the groups stepped in the current phase."""
        phase, hold = self.pipeline.phase or "A", self.pipeline.geometric_hold
        return frozenset(group for group in POLICY[phase].groups if steps(phase, group, hold))

    def optimizer_scaler_step_some(self, grad_scaler: torch.cuda.amp.GradScaler, param_groups: List[str]) -> None:
        active = [name for name in param_groups if name in self.active()]
        self.pipeline.mzen_model.cameras.drop_held_gradients()
        if not grad_scaler.is_enabled():  # with mixed precision the scaler skips non-finite steps itself
            self._check_finite_gradients(active)
        self.zero_grad_some([name for name in param_groups if name not in self.active()])
        super().optimizer_scaler_step_some(grad_scaler, active)

    def optimizer_scaler_step_all(self, grad_scaler: torch.cuda.amp.GradScaler) -> None:
        self.optimizer_scaler_step_some(grad_scaler, list(self.optimizers))

    def optimizer_step_all(self) -> None:
        self.pipeline.mzen_model.cameras.drop_held_gradients()
        self._check_finite_gradients(list(self.active()))
        for name in sorted(self.active() & set(self.optimizers)):
            self.optimizer_step(name)

    def _check_finite_gradients(self, names: List[str]) -> None:
        for name in names:
            for param in self.parameters.get(name, []):
                if param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                    raise NonFiniteError(f"non-finite gradient in parameter group '{name}'")


@dataclass
class MZENTrainerConfig(TrainerConfig):
    """nerfstudio trainer config for mzen (phase-aware optimizers)."""

    _target: Type = field(default_factory=lambda: MZENTrainer)
    """Class this config instantiates."""

    pipeline: MZENPipelineConfig = field(default_factory=MZENPipelineConfig)
    """The mzen pipeline."""
    preset_note: tyro.conf.Suppress[str] = ""
    """What the preset is and what it costs, printed when training starts."""

    def __post_init__(self) -> None:
        self.pipeline.model.total_steps = self.max_num_iterations

    def save_config(self) -> None:
        """Save ``config.yml`` with the demo scene's real path when no ``--data`` was given (the run
        keeps the placeholder's name), so every later command finds the run's scene."""
        from mzen_ns.synthetic.demo import resolve_demo_data

        self.set_experiment_name()
        resolve_demo_data(self.pipeline.datamanager)
        super().save_config()

    def set_experiment_name(self) -> None:
        """Name runs after the scene folder, whether given by ``--data`` or the parser's own data."""
        if self.experiment_name is None and self.pipeline.datamanager.data is None:
            self.experiment_name = self.pipeline.datamanager.dataparser.data.name
        super().set_experiment_name()


class MZENTrainer(Trainer):
    """Trainer with :class:`PhasedOptimizers`, phase-aligned learning-rate schedules, a
    non-finite guard, checkpoints written atomically (also when training dies), and resume from
    the newest checkpoint that reads."""

    config: MZENTrainerConfig
    pipeline: MZENPipeline

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        from mzen_ns.synthetic.demo import resolve_demo_data

        if self.config.preset_note:
            CONSOLE.print(f"[bold]{self.config.method_name}:[/] {self.config.preset_note}")
        resolve_demo_data(self.config.pipeline.datamanager)
        if str(self.device).startswith("cpu"):
            patches.keep_freed_memory()
        super().setup(test_mode=test_mode)

    def setup_optimizers(self) -> Optimizers:
        check_sanity(self.pipeline.get_param_groups(), self.config.optimizers)
        schedule = self.pipeline.phase_schedule
        config = {}
        for name, group in self.config.optimizers.items():
            group = dict(group)
            scheduler = group.get("scheduler")
            if isinstance(scheduler, PhaseDecaySchedulerConfig):
                group["scheduler"] = dataclasses.replace(
                    scheduler, start_step=schedule.group_start(name), max_steps=schedule.total
                )
            config[name] = group
        optimizers = PhasedOptimizers(config, self.pipeline.get_param_groups(), self.pipeline)
        self.curriculum = LevelCurriculum(
            self.pipeline.config.model.hash_curriculum,
            [m for m in self.pipeline.mzen_model.modules() if isinstance(m, HashEncoding)],
            self._pose_phase_window,
        )
        for name in ("fields", "proposal_networks"):
            if name in optimizers.optimizers:
                self.curriculum.attach(optimizers.optimizers[name])
        return optimizers

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint, written in a staging folder and renamed into the checkpoint
        folder in one step: a kill mid-save leaves the previous checkpoint and no partial one."""
        final, staging = self.checkpoint_dir, Path(self.base_dir) / ".saving-checkpoint"
        self.checkpoint_dir = staging
        try:
            super().save_checkpoint(step)
        finally:
            self.checkpoint_dir = final
        run_files.commit_checkpoint(staging / f"step-{step:09d}.ckpt", final, self.config.save_only_latest_checkpoint)
        shutil.rmtree(staging, ignore_errors=True)

    def _load_checkpoint(self) -> None:
        """Resume from ``--load-dir``'s newest checkpoint that reads (newer damaged ones are named
        and skipped) or from ``--load-checkpoint``; a missing, damaged or foreign file is an error
        naming it."""
        config = self.config
        if config.load_dir is None and config.load_checkpoint is None:
            super()._load_checkpoint()
            return
        if config.load_dir is not None:
            path, _, skipped = run_files.newest_readable_checkpoint(config.load_dir, config.load_step)
            for problem in skipped:
                CONSOLE.print(f"[bold yellow]Skipped a checkpoint that does not read:[/] {problem}")
        else:
            path = Path(config.load_checkpoint)
            run_files.read_checkpoint(path)
        chosen = (config.load_dir, config.load_checkpoint)
        config.load_dir, config.load_checkpoint = None, path  # nerfstudio loads exactly this file
        try:
            super()._load_checkpoint()
        except (RuntimeError, KeyError, ValueError) as error:
            raise run_files.RunFileError(path, f"does not fit this run ({run_files.first_line(error)})") from None
        finally:
            config.load_dir, config.load_checkpoint = chosen

    def _pose_phase_window(self, step: int) -> Optional[Tuple[int, int]]:
        """(start, end) of the phase holding ``step`` when it learns poses and the field (A, C)."""
        schedule = self.pipeline.phase_schedule
        phase = schedule.phase_at(step)
        return None if phase == "B" else (schedule.start_of(phase), schedule.end_of(phase))

    def train_iteration(self, step: int):
        self.curriculum.step = step
        loss, loss_dict, metrics_dict = super().train_iteration(step)
        values = [loss.detach().reshape(-1)] + [
            p.detach().reshape(-1) for p in self.pipeline.mzen_model.cameras.parameters()
        ]
        if not bool(torch.isfinite(torch.cat(values)).all()):  # one host sync per step
            raise NonFiniteError(f"non-finite loss or camera parameter at step {step}")
        self._last_good_step = step
        return loss, loss_dict, metrics_dict

    def train(self) -> None:
        self._last_good_step = -1
        # nerfstudio runs max_num_iterations steps *from the resumed step*; mzen stops where its
        # schedule ends (the end of ``stop_after``), whether the run is fresh or resumed
        remaining = self.pipeline.phase_schedule.end - self._start_step
        if remaining <= 0:
            CONSOLE.print(f"[bold]Nothing to train:[/] the schedule ends at step {self.pipeline.phase_schedule.end}.")
            return
        self.config.max_num_iterations = remaining
        started = time.perf_counter()
        try:
            super().train()
        except BaseException as error:
            self._save_after_failure(error)
            raise
        self._write_run_summary(remaining, time.perf_counter() - started)

    def _write_run_summary(self, steps: int, seconds: float) -> None:
        """``<run>/mzen_run_summary.json``: steps, wall time, seconds per step, peak memory (host
        resident set; CUDA allocator peak when on a GPU) and the seconds placing the zoom-ins took
        (``null`` when this run did not place them: a run resumed after priming), and the training rays
        per pixel of each level this run drew — what ``mzen-bench`` reports."""
        if self.local_rank != 0:
            return
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        start = self.pipeline.mzen_model.cameras.record.start
        summary = {
            "steps": steps,
            "train_seconds": seconds,
            "seconds_per_step": seconds / max(steps, 1),
            "peak_host_memory_mib": peak_rss / (1024.0**2 if sys.platform == "darwin" else 1024.0),
            "peak_gpu_memory_mib": torch.cuda.max_memory_allocated() / 1024.0**2 if torch.cuda.is_available() else None,
            "device": str(self.device),
            "initialiser": None if start is None else start.as_dict(),
            "priming_seconds": self.pipeline.priming_seconds,
            "rays_per_pixel": self.pipeline.datamanager.rays_per_pixel(),
        }
        (self.base_dir / "mzen_run_summary.json").write_text(json.dumps(summary, indent=2))

    def _save_after_failure(self, error: BaseException) -> None:
        step = getattr(self, "_last_good_step", -1)
        if step < 0 or self.local_rank != 0:
            return
        self.save_checkpoint(step)
        reason = "non-finite values" if isinstance(error, NonFiniteError) else type(error).__name__
        CONSOLE.print(
            f"[bold red]mzen stopped at step {step + 1} ({reason}: {error}).[/] Last good checkpoint: "
            f"{self.checkpoint_dir / f'step-{step:09d}.ckpt'} — resume with --load-dir {self.checkpoint_dir}"
        )
