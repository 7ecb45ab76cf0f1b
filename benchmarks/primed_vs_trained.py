"""Do phases B and C improve the zoom-ins priming placed? A finished run's training zoom-ins, scored in
their own pixels as trained, then primed again from the same wide cameras (priming does not read the
field; after a geometric start the wide cameras never moved) and scored as primed.

Needs a scene with ground truth and ``gt_points`` (``mzen-make-scene``). Per level: median and 90th
percentile of the own-pixel error, and each zoom-in's zoom error, as trained and as primed.

    python benchmarks/primed_vs_trained.py outputs/SCENE/mzen/TIMESTAMP/config.yml
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import torch
import tyro
from nerfstudio.utils.eval_utils import eval_setup

from mzen_ns.evaluation.evaluate import own_pixel_results


@dataclass
class PrimedVsTrained:
    """Own-pixel errors of a run's zoom-ins as trained and as primed again."""

    config: tyro.conf.Positional[Path]
    """The run's ``config.yml``."""


def scores(pipeline) -> Dict[str, object]:
    """The training cameras' own-pixel errors per level and each zoom-in's zoom error (per cent)."""
    cameras = pipeline.mzen_model.cameras
    truth = pipeline.datamanager.train_dataset.metadata["mzen_ground_truth"]
    results: Dict[str, object] = {
        key: round(value, 2)
        for key, value in own_pixel_results(cameras, truth, cameras, truth, cameras.match.flagged).items()
        if not key.startswith("test_")
    }
    zoom_ins = cameras.zoom_index
    ratio = cameras.zoom(zoom_ins).detach().cpu() / truth["zoom"][zoom_ins.cpu()]
    results["zoom_err_pct"] = [round(float(v), 2) for v in (ratio - 1).abs() * 100]
    return results


def main() -> None:
    config = tyro.cli(PrimedVsTrained)
    _, pipeline, _, _ = eval_setup(config.config)
    print("trained", scores(pipeline), flush=True)
    pipeline.run_dir = None  # leave the run's priming report alone
    with torch.no_grad():
        pipeline.prime_zoom_ins()
    print("primed ", scores(pipeline), flush=True)


if __name__ == "__main__":
    main()
