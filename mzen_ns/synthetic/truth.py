"""Scene-maker scenes for measurements: the scene families the benchmarks compare, and the ground
truth a scene's manifest carries, read back (``gt_transform_matrix``, ``gt_focal``, ``gt_zoom``,
``gt_parent``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from jaxtyping import Float, Int

FAMILIES: Dict[str, List[str]] = {
    "512x384": ["--width", "512", "--height", "384"],
    "128x96": [],
    "drift-256x192": ["--baseline", "0.001", "--variant", "sem", "--width", "256", "--height", "192"],
}
"""``mzen-make-scene`` arguments of each scene family: the default scene at two sizes, and stage
drift (a tiny baseline, the SEM look)."""


def make(folder: Path, arguments: Sequence[str], seed: int) -> Path:
    """Make a scene in ``folder`` with ``mzen-make-scene`` ``arguments`` and ``seed`` (in a
    separate process, as a user would); returns the folder."""
    subprocess.run(
        [sys.executable, "-m", "mzen_ns.scripts.make_scene", str(folder), "--seed", str(seed), *arguments],
        check=True,
        capture_output=True,
    )
    return folder


def wide_truth(scene: Path) -> Tuple[List[Path], Float[np.ndarray, "K 3 4"], float, int]:
    """The wide training views of ``scene``: image paths, true camera-to-world, true focal, width."""
    manifest = json.loads((scene / "transforms.json").read_text())
    dial = min(frame["zoom"] for frame in manifest["frames"])
    wides = [f for f in manifest["frames"] if f["zoom"] == dial and f.get("split", "train") == "train"]
    paths = [scene / f["file_path"] for f in wides]
    true = np.array([f["gt_transform_matrix"] for f in wides])[:, :3]
    return paths, true, float(manifest["gt_focal"]), int(manifest["w"])


def zoom_in_truth(
    scene: Path,
) -> Tuple[List[Tuple[Path, float]], Float[np.ndarray, "Z 3 4"], Float[np.ndarray, " Z"], Int[np.ndarray, " Z"]]:
    """The training zoom-ins of ``scene``: (path, dial relative to the wide views), true
    camera-to-world, true zoom, and the wide view each was taken from (an index into
    :func:`wide_truth`'s views, −1 when the scene does not say)."""
    manifest = json.loads((scene / "transforms.json").read_text())
    frames = [f for f in manifest["frames"] if f.get("split", "train") == "train"]
    dial = min(frame["zoom"] for frame in frames)
    wide_names = [f["file_path"] for f in frames if f["zoom"] == dial]
    zoom_ins = [f for f in frames if f["zoom"] != dial]
    queries = [(scene / f["file_path"], f["zoom"] / dial) for f in zoom_ins]
    true = np.array([f["gt_transform_matrix"] for f in zoom_ins]).reshape(-1, 4, 4)[:, :3]
    zoom = np.array([f["gt_zoom"] / dial for f in zoom_ins])
    parent = [wide_names.index(f["gt_parent"]) if f.get("gt_parent") in wide_names else -1 for f in zoom_ins]
    return queries, true, zoom, np.array(parent)
