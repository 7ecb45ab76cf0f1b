"""One picture per zoom level of what each run renders at a held-out view: the truth, then each run's
render, side by side, one row per level, enlarged so that a pixel stays a visible square.

Each run's renders come from ``ns-eval --load-config RUN/config.yml --render-output-path FOLDER``
(ground truth | render pairs named ``<dial>x_<view>.png``); the runs must share the scene, so their
pairs show the same views:

    python benchmarks/level_pictures.py --runs mzen=renders/mzen wide-only=renders/wide \\
        oracle=renders/oracle --output levels.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw


def pairs_by_level(folder: Path) -> Dict[str, Path]:
    """The first ground truth | render pair of each level in ``folder``, by its level prefix (``16x``)."""
    found: Dict[str, Path] = {}
    for path in sorted(folder.glob("*x_*.png")):
        found.setdefault(path.name.split("_", 1)[0], path)
    if not found:
        raise SystemExit(f"{folder}: no '<dial>x_<view>.png' renders (ns-eval --render-output-path)")
    return found


def halves(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """The ground truth and the render of one pair."""
    pair = np.asarray(Image.open(path).convert("RGB"))
    width = pair.shape[1] // 2
    return pair[:, :width], pair[:, width:]


def picture(runs: List[Tuple[str, Path]], scale: int) -> Image.Image:
    """Rows of levels (shallowest first), columns truth | each run's render, with labels."""
    levels = [pairs_by_level(folder) for _, folder in runs]
    shared = sorted(set.intersection(*(set(level) for level in levels)), key=lambda name: float(name[:-1]))
    rows = []
    for level in shared:
        truth, _ = halves(levels[0][level])
        row = [truth] + [halves(found[level])[1] for found in levels]
        rows.append(np.concatenate(row, axis=1))
    grid = np.concatenate(rows, axis=0).repeat(scale, axis=0).repeat(scale, axis=1)
    label_height = 14
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + label_height), "white")
    canvas.paste(Image.fromarray(grid), (0, label_height))
    draw = ImageDraw.Draw(canvas)
    tile = grid.shape[1] // (len(runs) + 1)
    for column, name in enumerate(["truth"] + [name for name, _ in runs]):
        draw.text((column * tile + 3, 1), name, fill="black")
    tile_height = (grid.shape[0]) // max(len(shared), 1)
    for row, level in enumerate(shared):
        draw.text((3, label_height + row * tile_height + 3), level, fill="white")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=FOLDER of ns-eval renders, in column order")
    parser.add_argument("--output", type=Path, required=True, help="the picture (PNG)")
    parser.add_argument("--scale", type=int, default=3, help="each pixel as a square this many pixels wide")
    args = parser.parse_args()
    runs = []
    for item in args.runs:
        name, _, folder = item.partition("=")
        if not folder:
            raise SystemExit(f"--runs {item!r}: give NAME=FOLDER")
        runs.append((name, Path(folder)))
    picture(runs, args.scale).save(args.output)
    print(args.output)


if __name__ == "__main__":
    main()
