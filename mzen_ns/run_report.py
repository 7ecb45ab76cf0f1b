"""What a run says about its cameras, on the console and in its folder, as each decision is made:
where the wide cameras started (``initialiser.json``), how the zoom-ins were placed (the priming
table, ``priming.png`` and ``priming.json``), and the solved cameras at the end
(``solved_cameras/transforms.json``). The pipeline decides when; this module only tells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from mzen_ns.datamanager import stack_images
from mzen_ns.distributed import is_main_process
from mzen_ns.priming.plan import PrimingConfig, PrimingPlan
from mzen_ns.priming.report import console_report, write_report

if TYPE_CHECKING:
    from mzen_ns.geometry.initialiser import Decision


class RunReport:
    """Tells a run's decisions about its training images (``dataset``, with ``dials``): on the console
    always, as files in ``run_dir`` once it is set and only on the main process. ``flagged_left_out``:
    whether flagged zoom-ins stay out of the field (what reports say of them); ``priming``: the
    priming's settings, whose flag thresholds are quoted where a placement is flagged."""

    def __init__(
        self, dataset: Any, dials: Float[Tensor, " N"], flagged_left_out: bool, priming: PrimingConfig
    ) -> None:
        self.dataset = dataset
        self.names: List[str] = [str(p) for p in dataset.metadata["mzen_file_paths"]]
        self.dials = dials.detach().cpu()
        self.flagged_left_out, self.priming_config = flagged_left_out, priming
        self.run_dir: Optional[Path] = None

    def _folder(self) -> Optional[Path]:
        """The run folder, created, where this process writes files; ``None`` where it does not."""
        if self.run_dir is None or not is_main_process():
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.run_dir

    def wide_start(self, decision: Decision) -> None:
        """Which rung of the initialiser's ladder started the wide cameras and why; every solver's
        verdict in ``initialiser.json``."""
        from mzen_ns.geometry.initialiser import decision_record

        CONSOLE.print(f"[bold]wide cameras start from {decision.start}:[/] {decision.reason}")
        if decision.caveat is not None:
            CONSOLE.print(f"[bold yellow]Focal: {decision.caveat}")
        folder = self._folder()
        if folder is not None:
            (folder / "initialiser.json").write_text(json.dumps(decision_record(decision), indent=2))

    def priming(
        self, plan: PrimingPlan, images: Optional[Float[Tensor, "N H W 3"]] = None, seconds: Optional[float] = None
    ) -> None:
        """The priming table and flagged zoom-ins on the console (and the time placing them took,
        ``seconds``, when they were placed now); picture and JSON in the run folder (``images``: the
        training images, stacked here when not given)."""
        if seconds is not None:
            CONSOLE.print(f"placed {plan.query.numel()} zoom-in(s) in {seconds:.1f} s")
        for said in console_report(plan, self.names, self.dials, self.flagged_left_out, self.priming_config):
            CONSOLE.print(said)
        folder = self._folder()
        if folder is not None:
            images = images if images is not None else stack_images(self.dataset)
            path = write_report(plan, self.names, self.dials, images, folder, self.flagged_left_out)
            CONSOLE.print(f"priming picture: {path}")

    def solved_cameras(self, manifest: Callable[[Path], Dict[str, Any]]) -> Optional[Path]:
        """Write ``manifest(folder)`` (a ``transforms.json`` whose paths are relative to ``folder``) to
        ``<run>/solved_cameras/transforms.json``; its path, or ``None`` where this process writes no files."""
        folder = self._folder()
        if folder is None:
            return None
        path = folder / "solved_cameras" / "transforms.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest(path.parent), indent=2))
        CONSOLE.print(f"solved cameras: {path}  (any method: ns-train nerfacto --data {path.parent})")
        return path
