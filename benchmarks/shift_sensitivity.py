"""How much held-out PSNR does a sub-pixel camera error cost? Each level's true held-out views
against themselves shifted by a fraction of a pixel (bicubic, eight directions averaged): the PSNR a
render would score if the field were perfect and only the camera were that far off, in the image's
own pixels.

The views are the ground-truth halves of ``ns-eval --render-output-path`` pairs (``<dial>x_<view>.png``,
truth | render), so the scene's own texture at its own size decides the figure:

    python benchmarks/shift_sensitivity.py --renders runs/s81_mzen-oracle.renders --shifts 0.1 0.2 0.33 0.5
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
from PIL import Image

DIRECTIONS = 8
"""Shift directions averaged per view, evenly around the circle."""


def truth_views(folder: Path) -> Dict[str, List[np.ndarray]]:
    """The ground-truth half of every pair in ``folder``, by level prefix (``16x``), RGB in [0, 1]."""
    found: Dict[str, List[np.ndarray]] = {}
    for path in sorted(folder.glob("*x_*.png")):
        pair = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        found.setdefault(path.name.split("_", 1)[0], []).append(pair[:, : pair.shape[1] // 2])
    if not found:
        raise SystemExit(f"{folder}: no '<dial>x_<view>.png' renders (ns-eval --render-output-path)")
    return found


def shifted_psnr(image: np.ndarray, shift: float) -> float:
    """PSNR of ``image`` against itself moved by ``shift`` pixels, mean over directions (a 2-pixel
    border left out: what moved in from outside is unknown)."""
    height, width = image.shape[:2]
    scores = []
    for angle in np.linspace(0.0, 2 * math.pi, DIRECTIONS, endpoint=False):
        move = np.float32([[1, 0, shift * math.cos(angle)], [0, 1, shift * math.sin(angle)]])
        moved = cv2.warpAffine(image, move, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        error = float(np.mean((moved - image)[2:-2, 2:-2] ** 2))
        scores.append(-10 * math.log10(max(error, 1e-12)))
    return float(np.mean(scores))


def table(views: Dict[str, List[np.ndarray]], shifts: Sequence[float]) -> List[str]:
    """One row per level: views, and the mean PSNR at each shift."""
    lines = ["| level | views | " + " | ".join(f"{s:g} px" for s in shifts) + " |"]
    lines.append("|---|---|" + "---|" * len(shifts))
    for level in sorted(views, key=lambda name: float(name[:-1])):
        cells = [np.mean([shifted_psnr(view, s) for view in views[level]]) for s in shifts]
        lines.append(f"| {level} | {len(views[level])} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=Path, required=True, help="a folder of ns-eval renders")
    parser.add_argument("--shifts", type=float, nargs="+", default=[0.1, 0.2, 0.33, 0.5], help="shifts in pixels")
    args = parser.parse_args()
    print("\n".join(table(truth_views(args.renders), args.shifts)))


if __name__ == "__main__":
    main()
