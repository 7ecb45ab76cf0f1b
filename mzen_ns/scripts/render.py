"""``mzen-render --load-config CONFIG --view NAME --magnification M --output FILE``: one view of an
mzen run rendered at its pose and zoom, magnified about its principal point.

A training view is rendered at its learned camera; a held-out view is first registered against
the frozen field exactly as ``ns-eval`` does. ``--magnification 16`` renders the central 1/16 of
that view's field at full resolution — the detail a 16× zoom-in would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from rich.console import Console

from mzen_ns.scripts._common import load_run, run_command

CONSOLE = Console()


@dataclass
class RenderView:
    """Render one training or held-out view of an mzen run at any magnification."""

    load_config: Path
    """The run's config.yml."""
    view: str
    """The view: its path as in the scene (e.g. ``images/4x/train_002.png``), file name or stem."""
    output: Path = Path("render.png")
    """PNG to write."""
    magnification: float = 1.0
    """Focal multiplier about the principal point (16: the central 1/16 of the field)."""

    def check(self) -> None:
        """Refuse a bad magnification, or a view the run's scene does not have, before loading the run."""
        from mzen_dataparsers.manifest import read_scene
        from mzen_ns.evaluation.registration import find_view
        from mzen_ns.run_files import load_config

        if not self.magnification > 0:
            raise ValueError(f"--magnification must be positive, got {self.magnification}")
        datamanager = load_config(self.load_config).pipeline.datamanager
        scene = read_scene(datamanager.data if datamanager.data is not None else datamanager.dataparser.data)
        names = [frame.file_path for frame in scene.frames]
        if find_view(names, self.view) is None:
            raise ValueError(f"no view {self.view!r} in the run's scene; its views are: {', '.join(names)}")

    def main(self) -> Path:
        """Load the run, render, write the PNG; its path."""
        from PIL import Image

        from mzen_ns.evaluation.evaluate import render_view
        from mzen_ns.evaluation.registration import camera_for_view

        self.check()
        _, pipeline, step = load_run(self.load_config, test_mode="test")
        config = pipeline.config
        cameras, index, split = camera_for_view(
            pipeline.mzen_model, pipeline.datamanager, config.registration, config.priming, self.view
        )
        rgb = render_view(pipeline.mzen_model, cameras, index, self.magnification)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rgb.cpu().numpy() * 255.0).round().astype(np.uint8)).save(self.output)
        zoom = float(cameras.zoom()[index]) * self.magnification
        CONSOLE.print(
            f"[bold green]Wrote[/] {self.output}: {split} view {self.view!r} (step {step}), "
            f"zoom {zoom:.3f} relative to the wide focal {float(pipeline.mzen_model.cameras.focal):.2f} px"
        )
        return self.output


def entrypoint() -> None:
    """Console script ``mzen-render``."""
    run_command("mzen-render", tyro.cli(RenderView).main)


if __name__ == "__main__":
    entrypoint()
