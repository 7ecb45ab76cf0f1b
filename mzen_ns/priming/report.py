"""What priming tells the user: a console table, a picture and JSON rows, one entry format for all."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from jaxtyping import Float
from rich.table import Table
from torch import Tensor

from mzen_ns.priming.plan import PrimingConfig, PrimingPlan

GEOMETRIC_SCORE_KIND = "2d3d_inliers"
"""The score kind of a zoom-in placed by 2D–3D registration: its correspondences."""


def match_entry(
    primed_from: str,
    matched_wide: str,
    centre: Sequence[float],
    relative_zoom: float,
    score: float,
    runner_up: Optional[float],
    score_kind: str,
    flagged: bool,
    trains_field: bool,
) -> Dict[str, object]:
    """How one image was primed, as written to ``priming.json`` and the solved-camera export
    (``runner_up`` None: no placement showed another part of the scene; ``trains_field`` False: left out of
    the field, as flagged zoom-ins are by default)."""
    return {
        "primed_from": primed_from,
        "matched_wide": matched_wide,
        "window_centre_px": [round(float(v), 2) for v in centre],
        "relative_zoom": round(relative_zoom, 4),
        "score": score,
        "runner_up_score": runner_up,
        "score_kind": score_kind,
        "flagged": flagged,
        "trains_field": trains_field,
    }


def plan_rows(
    plan: PrimingPlan, names: Sequence[str], dials: Float[Tensor, " N"], flagged_left_out: bool = True
) -> List[Dict[str, object]]:
    """One JSON-able row per query; ``trains_field`` is false for a flagged one when flagged zoom-ins
    are left out of the field (``flagged_left_out``); ``field_ncc``: how well the field rendered at the
    chosen placement and at its rival (None: no rival) agreed with the query, where it was asked (else None);
    ``attainable_ncc``: the window NCC the images' noise allows a right placement (None: not a window search)."""
    rows = []
    for row, query in enumerate(plan.query.tolist()):
        runner_up = float(plan.runner_up[row])
        geometric = bool(plan.geometric[row]) if plan.geometric is not None else False
        entry = match_entry(
            names[int(plan.source[row])],
            names[int(plan.root[row])],
            plan.centre[row].tolist(),
            float(plan.relative_zoom[row]),
            float(plan.score[row]),
            runner_up if math.isfinite(runner_up) else None,
            GEOMETRIC_SCORE_KIND if geometric else plan.score_kind,
            bool(plan.flagged[row]),
            not (flagged_left_out and bool(plan.flagged[row])),
        )
        field = plan.field_ncc[row].tolist() if plan.field_ncc is not None else [math.nan] * 2
        entry["field_ncc"] = None if not math.isfinite(field[0]) else [_rounded(v) for v in field]
        attainable = float(plan.attainable[row]) if plan.attainable is not None else math.nan
        entry["attainable_ncc"] = None if geometric else _rounded(attainable)
        rows.append({"zoom_in": names[query], "dial": float(dials[query]), **entry})
    return rows


def _rounded(value: float) -> Optional[float]:
    return round(value, 4) if math.isfinite(value) else None


def plan_table(plan: PrimingPlan, names: Sequence[str], dials: Float[Tensor, " N"]) -> Table:
    """A rich table: zoom-in, dial, source (and its wide view), window position and zoom, scores, the
    field's NCC at the chosen placement / its rival, flag."""
    table = Table(title=f"priming: zoom-in → source view (score: {plan.score_kind}, or 2D–3D correspondences)")
    columns = (
        "zoom-in",
        "dial",
        "primed from",
        "wide view",
        "window x, y",
        "zoom",
        "score",
        "noise allows",
        "runner-up",
        "field",
        "",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("zoom-in", "primed from", "wide view") else "right")
    for row in plan_rows(plan, names, dials):
        runner_up = row["runner_up_score"]
        table.add_row(
            str(row["zoom_in"]),
            f"{row['dial']:g}",
            str(row["primed_from"]),
            str(row["matched_wide"]),
            "{:.1f}, {:.1f}".format(*row["window_centre_px"]),
            f"{row['relative_zoom']:.3f}",
            f"{row['score']:.0f} 2D–3D" if row["score_kind"] == GEOMETRIC_SCORE_KIND else f"{row['score']:.4f}",
            "" if row["attainable_ncc"] is None else f"{row['attainable_ncc']:.4f}",
            "n/a" if runner_up is None else f"{runner_up:.4f}",
            _field_cell(row["field_ncc"]),
            "[bold yellow]FLAGGED" if row["flagged"] else "",
        )
    return table


def _field_cell(field: Optional[List[Optional[float]]]) -> str:
    """The table's field column: the chosen placement's NCC, and the rival's where there was one."""
    if field is None:
        return ""
    return f"{field[0]:.3f}" if field[1] is None else f"{field[0]:.3f} / {field[1]:.3f}"


def save_plan_picture(
    plan: PrimingPlan,
    images: Float[Tensor, "N H W 3"],
    path: Path,
    names: Optional[Sequence[str]] = None,
    flagged_left_out: bool = True,
) -> Path:
    """Each zoom-in beside its source view with the matched window drawn on it (red if flagged,
    captioned as left out of the field when ``flagged_left_out``)."""
    from PIL import Image, ImageDraw

    height, width = images.shape[1:3]
    label = 12
    sheet = Image.new("RGB", (2 * width + 4, max(1, plan.query.numel()) * (height + label + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, query in enumerate(plan.query.tolist()):
        top = row * (height + label + 2)
        source = int(plan.source[row])
        sheet.paste(Image.fromarray(_to_uint8(images[query])), (0, top + label))
        sheet.paste(Image.fromarray(_to_uint8(images[source])), (width + 4, top + label))
        zoom = float(plan.relative_zoom[row])
        x, y = (float(v) for v in plan.centre[row])
        half_w, half_h = width / zoom / 2, height / zoom / 2
        flagged = bool(plan.flagged[row])
        box = [width + 4 + x - half_w, top + label + y - half_h, width + 4 + x + half_w, top + label + y + half_h]
        draw.rectangle(box, outline=(220, 0, 0) if flagged else (0, 200, 0))
        geometric = plan.geometric is not None and bool(plan.geometric[row])
        score = f"{float(plan.score[row]):.0f} 2D-3D" if geometric else f"{float(plan.score[row]):.3f}"
        caption = f"{_short(names, query)} <- {_short(names, source)} {score}"
        mark = (" FLAGGED, not in field" if flagged_left_out else " FLAGGED") if flagged else ""
        draw.text((1, top), caption + mark, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _to_uint8(image: Tensor) -> np.ndarray:
    return (image[..., :3].float().clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)


def _short(names: Optional[Sequence[str]], index: int) -> str:
    """Label for the picture: the last folder and file stem (``4x/train_000``), or the index."""
    if not names:
        return str(index)
    path = Path(names[index])
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def flagged_names(plan: PrimingPlan, names: Sequence[str]) -> List[str]:
    """Names of the flagged queries."""
    return [names[int(q)] for q, flag in zip(plan.query, plan.flagged) if bool(flag)]


def console_report(
    plan: PrimingPlan,
    names: Sequence[str],
    dials: Float[Tensor, " N"],
    left_out: bool,
    priming: PrimingConfig,
) -> List[Union[Table, str]]:
    """What the console says about priming: the table, and a warning naming the flagged zoom-ins
    (``left_out``: whether flagged zoom-ins are left out of the field; ``priming``: whose flag
    thresholds flagged them)."""
    said: List[Union[Table, str]] = [plan_table(plan, names, dials)]
    flagged = flagged_names(plan, names)
    if flagged:
        fate = "left out of the field (phase C)" if left_out else "primed from the best anyway"
        margin, floor = priming.flag_margin, priming.noise_floor
        said.append(
            f"[bold yellow]Priming: {len(flagged)} zoom-in(s) have no clear best match (another part of the "
            f"scene fits within {margin:.0%} as well, or the best fits under {floor:.0%} of what the images' "
            f"noise allows); {fate}, check them: {', '.join(flagged)}"
        )
    return said


def write_report(
    plan: PrimingPlan,
    names: Sequence[str],
    dials: Float[Tensor, " N"],
    images: Tensor,
    run_dir: Path,
    left_out: bool,
) -> Path:
    """``priming.png`` and ``priming.json`` in ``run_dir`` (``images``: the training
    images); returns the picture's path."""
    picture = save_plan_picture(plan, images, run_dir / "priming.png", names, left_out)
    rows = plan_rows(plan, names, dials, left_out)
    (run_dir / "priming.json").write_text(json.dumps(rows, indent=2))
    return picture
