"""The README's picture: one deep zoom-in of an mzen run, where priming placed it, and what the trained
field renders at its camera beside what the wide view alone holds there.

    ns-train mzen --timestamp demo          # the demo scene, CPU preset
    python benchmarks/overview_picture.py --run outputs/mzen-demo-scene/mzen/demo --scene ~/.cache/mzen/demo-scene-v1

Panels: the wide view with the chain's windows drawn (the shallower zoom-in's, and inside it the
deep one's), the shallower zoom-in with the deep window, the deep zoom-in as photographed, the
field rendered at the deep zoom-in's learned camera (``mzen-render``), and the wide view's own pixels
of that window enlarged (bicubic). ``--priming-only`` keeps the first three.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _window(row: dict, size) -> tuple:
    width, height = size
    x, y = row["window_centre_px"]
    zoom = row["relative_zoom"]
    return x - width / zoom / 2, y - height / zoom / 2, x + width / zoom / 2, y + height / zoom / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder (holding config.yml, priming.json)")
    parser.add_argument("--scene", type=Path, required=True, help="the run's scene folder")
    parser.add_argument(
        "--zoom-in", default=None, help="deep zoom-in (default: the deepest one primed through another)"
    )
    parser.add_argument("--output", type=Path, default=Path("docs/images/overview.png"))
    parser.add_argument("--priming-only", action="store_true", help="only the first three panels (no rendering)")
    parser.add_argument("--scale", type=int, default=3, help="nearest-neighbour enlargement of every panel")
    args = parser.parse_args()

    report = args.run / "priming.json"
    if not report.is_file():  # runs made before the report had its name
        report = args.run / "crop_and_match.json"
    rows = {row["zoom_in"]: row for row in json.loads(report.read_text())}
    chained = [r for r in rows.values() if r["primed_from"] in rows]
    deep = rows[args.zoom_in] if args.zoom_in else max(chained, key=lambda r: r["dial"])
    middle = rows[deep["primed_from"]]
    scene = args.scene.expanduser()
    wide_image = Image.open(scene / middle["primed_from"]).convert("RGB")
    middle_image = Image.open(scene / deep["primed_from"]).convert("RGB")
    deep_image = Image.open(scene / deep["zoom_in"]).convert("RGB")
    size = wide_image.size

    with tempfile.TemporaryDirectory() as folder:
        render = Path(folder) / "render.png"
        if args.priming_only:
            Image.new("RGB", size).save(render)
        command = [
            "mzen-render",
            "--load-config",
            str(args.run / "config.yml"),
            "--view",
            deep["zoom_in"],
            "--output",
            str(render),
        ]
        if not args.priming_only:
            subprocess.run(command, check=True, stdout=sys.stderr)
        rendered = Image.open(render).convert("RGB")

    outer = _window(middle, size)  # the shallower zoom-in's window in the wide view
    inner_in_middle = _window(deep, size)  # the deep zoom-in's window in the shallower one
    scale_x, scale_y = (outer[2] - outer[0]) / size[0], (outer[3] - outer[1]) / size[1]
    inner = (
        outer[0] + inner_in_middle[0] * scale_x,
        outer[1] + inner_in_middle[1] * scale_y,
        outer[0] + inner_in_middle[2] * scale_x,
        outer[1] + inner_in_middle[3] * scale_y,
    )
    crop = wide_image.crop(tuple(round(v) for v in inner)).resize(size, Image.BICUBIC)

    panels = [wide_image, middle_image, deep_image] + ([] if args.priming_only else [rendered, crop])
    titles = [
        f"wide {Path(middle['primed_from']).stem}",
        f"{middle['dial']:g}x {Path(deep['primed_from']).stem}",
        f"{deep['dial']:g}x photo",
        f"{deep['dial']:g}x field render",
        f"wide pixels at {deep['dial']:g}x",
    ]
    s, gap, label = args.scale, 6, 14
    sheet = Image.new("RGB", (len(panels) * (size[0] * s + gap) - gap, size[1] * s + label), "white")
    draw = ImageDraw.Draw(sheet)
    titles = titles[: len(panels)]
    for k, (panel, title) in enumerate(zip(panels, titles)):
        left = k * (size[0] * s + gap)
        sheet.paste(panel.resize((size[0] * s, size[1] * s), Image.NEAREST), (left, label))
        draw.text((left + 2, 1), title, fill=(0, 0, 0))
        if k == 0:
            for box, colour in ((outer, (255, 127, 14)), (inner, (214, 39, 40))):
                draw.rectangle(
                    [left + box[0] * s, label + box[1] * s, left + box[2] * s, label + box[3] * s],
                    outline=colour,
                    width=2,
                )
        if k == 1:
            box = inner_in_middle
            draw.rectangle(
                [left + box[0] * s, label + box[1] * s, left + box[2] * s, label + box[3] * s],
                outline=(214, 39, 40),
                width=2,
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output} ({np.asarray(sheet).shape[1]}x{np.asarray(sheet).shape[0]})")


if __name__ == "__main__":
    main()
