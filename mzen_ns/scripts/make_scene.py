"""``mzen-make-scene OUT``: render a synthetic multi-zoom scene with ground truth, in FF-MZN format
(options: :class:`~mzen_ns.synthetic.scene_maker.SceneMakerConfig`)."""

from __future__ import annotations

import time

import tyro
from rich.console import Console

from mzen_ns.scripts._common import run_command
from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene


def entrypoint() -> None:
    """Console script ``mzen-make-scene``."""
    config = tyro.cli(SceneMakerConfig)
    start = time.perf_counter()
    manifest = run_command("mzen-make-scene", lambda: make_scene(config))
    count = config.n_wide + config.n_test + (len(config.zooms) - 1) * (config.n_zoom + config.n_test)
    zooms = ", ".join(f"{z:g}" for z in sorted(config.zooms))
    Console().print(
        f"[bold green]Wrote[/] {count} frames ({config.variant}, zooms {zooms}, {config.width}x{config.height}) "
        f"to {manifest} in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    entrypoint()
