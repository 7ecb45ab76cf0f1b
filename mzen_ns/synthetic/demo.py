"""The embedded demo scene ``ns-train mzen`` trains on when no ``--data`` is given."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

DEMO_VERSION = "v1"
"""Bump when the scene maker's output changes, so cached demo scenes are re-made."""


DEMO_DATA = Path("mzen-demo-scene")
"""Placeholder ``data`` of mzen's presets: replaced by :func:`demo_scene_dir` when training starts."""


def cache_root() -> Path:
    """``$MZEN_CACHE_DIR`` or ``~/.cache/mzen``."""
    return Path(os.environ.get("MZEN_CACHE_DIR") or Path.home() / ".cache" / "mzen")


def demo_scene_dir() -> Path:
    """Where the demo scene lives (made on first use)."""
    return cache_root() / f"demo-scene-{DEMO_VERSION}"


def resolve_demo_data(datamanager: Any) -> None:
    """Point a data manager config that still holds the placeholder (no ``--data``) at the demo
    scene, making it on first use."""
    if datamanager.data is None and datamanager.dataparser.data == DEMO_DATA and not DEMO_DATA.exists():
        datamanager.dataparser.data = ensure_demo_scene(demo_scene_dir())


def ensure_demo_scene(path: Path) -> Path:
    """Make the default scene-maker scene at ``path`` unless it is already there."""
    if (path / "transforms.json").is_file():
        return path
    from rich.console import Console

    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    Console().print(f"[bold]mzen:[/] no --data given; making the demo scene in {path} (first use only)")
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    make_scene(SceneMakerConfig(output=partial))
    if (path / "transforms.json").is_file():  # another process made it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
        return path
    if path.exists():
        shutil.rmtree(path)
    partial.replace(path)
    return path
