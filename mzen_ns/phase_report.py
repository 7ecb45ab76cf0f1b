"""What the console and the logs say when a phase ends: each training loss's mean over the phase,
where the wide cameras started, the learned focal and zoom spread, and the phase's wall time."""

from __future__ import annotations

import time
from typing import Dict

import torch
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from rich.table import Table

from mzen_ns.cameras import ZoomCameras
from mzen_ns.phases import Phase


class PhaseReport:
    """Accumulates the losses of the current phase (from :meth:`restart`, when it begins); :meth:`close`
    prints and logs their means when it ends."""

    def __init__(self) -> None:
        self._sums: Dict[str, torch.Tensor] = {}
        self._count = 0
        self._started = time.perf_counter()

    def add(self, loss_dict: Dict[str, torch.Tensor]) -> None:
        """Count one step's losses (summed on their device; read once, when the phase ends)."""
        for name, value in loss_dict.items():
            self._sums[name] = self._sums.get(name, 0.0) + value.detach()
        self._count += 1

    def restart(self) -> None:
        """A phase begins: forget the sums, start its clock."""
        self._sums.clear()
        self._count = 0
        self._started = time.perf_counter()

    def close(self, phase: Phase, step: int, cameras: ZoomCameras) -> Table:
        """Print and log the summary of ``phase``, which ended before ``step``; return its table."""
        metrics: Dict[str, torch.Tensor] = {}
        cameras.get_metrics_dict(metrics)
        table = Table(title=f"phase {phase} summary (ended before step {step})")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for name, total in sorted(self._sums.items()):
            mean = float(total) / max(self._count, 1)
            table.add_row(f"mean {name}", f"{mean:.5f}")
            writer.put_scalar(name=f"phase_summary/{phase}/{name}", scalar=mean, step=step)
        if cameras.record.start is not None:
            table.add_row("wide cameras started from", cameras.record.start.rung)
        table.add_row("learned focal (px)", f"{float(metrics['focal']):.2f}")
        if "zoom_over_dial_min" in metrics:
            spread = f"{float(metrics['zoom_over_dial_min']):.4f}, {float(metrics['zoom_over_dial_max']):.4f}"
            table.add_row("zoom / dial (min, max)", spread)
        table.add_row("wall time (s)", f"{time.perf_counter() - self._started:.1f}")
        CONSOLE.print(table)
        return table
