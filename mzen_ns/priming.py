"""Priming zoom-ins (METHOD.md phase B step 1, and issue 7 beyond the paper).

Three ways to choose where a zoom-in starts, the ``method`` of :class:`PrimingConfig`:

- ``centred``: the paper's crop-and-match — the central ``1/dial`` crop of every wide view,
  compared by MSE (:mod:`mzen_ns.crop_and_match`); the zoom-in takes the best wide view's pose.
- ``position``: the zoom-in's footprint is searched *anywhere* in every wide view (normalised
  cross-correlation over positions and a few scales, :mod:`mzen_ns.position_search`); the best
  placements are refined to the rotation (roll included) and zoom of a camera turning about the
  candidate's optical centre (:mod:`mzen_ns.window_fit`), which tells the view the zoom-in was
  taken from apart from neighbours that see the same patch with parallax; the zoom-in takes the
  best view's pose turned by that rotation, and the fitted zoom.
- ``hierarchical``: as ``position``, and a deeper zoom-in is also searched in the zoom-ins of
  lower levels (primed before it, or registered already); the most confident placement wins and
  the pose is composed through the chain (wide → 4× → 16×).

Every placement carries its score and the best score among candidates that lead to *another*
wide view (a chain through a zoom-in of the same wide view is not a rival); a zoom-in whose best
is not clearly better than that runner-up is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from rich.table import Table
from torch import Tensor, nn
from typing_extensions import assert_never

from mzen_ns.crop_and_match import crop_and_match
from mzen_ns.position_search import Placement, PositionSearchConfig, search_positions
from mzen_ns.window_fit import WindowFitConfig, axis_pixel, fit_windows, window_rotation

PrimingMethod = Literal["centred", "position", "hierarchical"]


def score_kind(method: PrimingMethod) -> str:
    """What a method's scores are: ``-mse`` (centred crop-and-match) or ``ncc`` (position search)."""
    if method == "centred":
        return "-mse"
    if method in ("position", "hierarchical"):
        return "ncc"
    assert_never(method)


@dataclass
class PrimingConfig:
    """How each zoom-in (and each held-out view at evaluation) gets its starting camera."""

    method: PrimingMethod = "hierarchical"
    """``centred``: the paper's central crop-and-match; ``position``: footprint searched anywhere
    in the wide views, pose rotated onto it; ``hierarchical``: also searched in lower-level
    zoom-ins, pose composed through the chain."""
    search: PositionSearchConfig = field(default_factory=PositionSearchConfig)
    """Position search (``position``, ``hierarchical``)."""
    fit: WindowFitConfig = field(default_factory=WindowFitConfig)
    """Refinement of the best placements to a rotation and zoom (``position``, ``hierarchical``)."""
    centred_work_width: int = 64
    """``centred``: all pairs are scored on copies this wide, the best 3 re-scored exactly."""
    prefer_centre_within: float = 0.0
    """``position``/``hierarchical``: among placements scoring within this of the best (NCC), the
    one nearest its view's centre wins, as ``centred`` would choose (0: best score only; measured:
    0.01 helps centred zoom-ins and hurts off-axis ones)."""
    flag_margin: float = 0.3
    """A zoom-in is flagged when the runner-up's misfit (best candidate leading to another wide
    view; misfit = 1 − NCC, or the MSE for ``centred``) exceeds the best's by less than this
    fraction of the best's."""


@dataclass
class PrimingPlan:
    """Where every query (zoom-in or held-out view) starts, and how sure the match is."""

    query: Int[Tensor, "Q"]
    """Image indices of the queries."""
    source: Int[Tensor, "Q"]
    """Image index each query is primed from (a wide view, or a lower-level image)."""
    root: Int[Tensor, "Q"]
    """Wide view at the end of the chain (``source`` itself when it is wide)."""
    centre: Float[Tensor, "Q 2"]
    """Window centre (x, y) in the source's pixels (its principal point for ``centred``)."""
    relative_zoom: Float[Tensor, "Q"]
    """Query zoom over the source's, as matched."""
    rotation: Float[Tensor, "Q 3 3"]
    """Query camera's orientation in the source camera's frame (identity for ``centred``)."""
    score: Float[Tensor, "Q"]
    """Match score, higher is better (NCC; −MSE for ``centred``)."""
    runner_up: Float[Tensor, "Q"]
    """Best score among candidates leading to another wide view (−inf: none)."""
    flagged: Bool[Tensor, "Q"]
    """Best match not clearly better than the runner-up."""
    score_kind: str
    """``ncc`` or ``-mse``."""

    def levels(self, dials: Float[Tensor, "N"]) -> Iterator[Int[Tensor, "K"]]:
        """Rows of the plan grouped by the queries' dial, shallowest first (a chain's source is
        always primed before the images primed from it)."""
        query_dials = dials[self.query]
        for dial in torch.unique(query_dials):
            yield torch.nonzero(query_dials == dial).squeeze(-1)


def plan_priming(
    images: Float[Tensor, "N H W 3"],
    dials: Float[Tensor, "N"],
    posed: Bool[Tensor, "N"],
    roots: Int[Tensor, "N"],
    principal: Float[Tensor, "N 2"],
    focal: Float[Tensor, "N"],
    aspect: float,
    config: PrimingConfig,
) -> PrimingPlan:
    """Plan the priming of every image that is not ``posed`` from the posed ones. ``roots`` gives
    each posed image's wide view (itself for a wide view); wide views are the posed images at the
    smallest dial; ``principal`` is each image's principal point (x, y) in pixels, ``focal`` each
    posed image's current focal fx in pixels (base focal × zoom; others are ignored) and
    ``aspect`` fy / fx."""
    wide = posed & (dials == dials[posed].min())
    if config.method == "centred":
        return _plan_centred(images, dials, wide, torch.nonzero(~posed).squeeze(-1), principal, config)
    if config.method in ("position", "hierarchical"):
        return _plan_search(images, dials, posed, wide, roots, principal, focal.float().clone(), aspect, config)
    assert_never(config.method)


def _plan_centred(images: Tensor, dials: Tensor, wide: Tensor, query: Tensor, principal: Tensor,
                  config: PrimingConfig) -> PrimingPlan:
    wide_idx = torch.nonzero(wide).squeeze(-1)
    subset = torch.cat([wide_idx, query])
    is_wide = torch.zeros(subset.numel(), dtype=torch.bool)
    is_wide[: wide_idx.numel()] = True
    result = crop_and_match(images[subset], dials[subset], is_wide, work_width=config.centred_work_width)
    source = subset[result.matched]
    return PrimingPlan(
        query=query, source=source, root=source.clone(), centre=principal[source].clone(),
        relative_zoom=dials[query] / dials[source], rotation=torch.eye(3).expand(query.numel(), 3, 3).clone(),
        score=-result.mse, runner_up=-result.runner_up_mse,
        flagged=_flagged(result.mse, result.runner_up_mse, config.flag_margin), score_kind=score_kind(config.method),
    )


def _flagged(misfit: Tensor, runner_up_misfit: Tensor, margin: float) -> Tensor:
    """The runner-up's misfit exceeds the best's by less than ``margin`` × the best's."""
    return (runner_up_misfit - misfit) < margin * misfit


def _plan_search(images: Tensor, dials: Tensor, posed: Tensor, wide: Tensor, roots: Tensor, principal: Tensor,
                 focal: Tensor, aspect: float, config: PrimingConfig) -> PrimingPlan:
    root = torch.where(posed, roots, torch.full_like(roots, -1))
    planned = posed.clone()
    keys = ("query", "source", "centre", "zoom", "rotation", "score", "runner_up")
    rows: Dict[str, List[Tensor]] = {key: [] for key in keys}
    queries = torch.nonzero(~posed).squeeze(-1)
    for dial in torch.unique(dials[queries]):
        level = queries[dials[queries] == dial]
        candidates = _candidates(dials, wide, planned, dial, config.method)
        placement = search_positions(images[level], images[candidates], dial / dials[candidates][None].expand(level.numel(), -1),
                                     config.search)
        rotation = window_rotation(placement.centre.reshape(-1, 2), principal[candidates].repeat(level.numel(), 1),
                                   focal[candidates].repeat(level.numel()),
                                   focal[candidates].repeat(level.numel()) * aspect).view(level.numel(), -1, 3, 3)
        rival_roots = root[candidates]
        if config.fit.candidates > 0:
            _verify(images, dials, level, candidates, rival_roots, placement, rotation, principal, focal, aspect, config.fit)
        best = _choose(placement.score, placement.centre, principal[candidates], images.shape[1:3],
                       config.prefer_centre_within)
        source, chosen = candidates[best], (torch.arange(level.numel()), best)
        rows["query"].append(level)
        rows["source"].append(source)
        rows["centre"].append(placement.centre[chosen])
        rows["zoom"].append(placement.zoom[chosen])
        rows["rotation"].append(rotation[chosen])
        rows["score"].append(placement.score[chosen])
        rival = rival_roots[None, :] != root[source][:, None]
        rows["runner_up"].append(placement.score.masked_fill(~rival, -math.inf).max(dim=1).values)
        root[level] = root[source]
        focal[level] = focal[source] * placement.zoom[chosen]
        planned[level] = True
    stacked = {key: torch.cat(value) if value else torch.empty(0) for key, value in rows.items()}
    query, source, score = stacked["query"].long(), stacked["source"].long(), stacked["score"]
    return PrimingPlan(
        query=query, source=source, root=root[query], centre=stacked["centre"].reshape(-1, 2),
        relative_zoom=stacked["zoom"], rotation=stacked["rotation"].reshape(-1, 3, 3), score=score,
        runner_up=stacked["runner_up"], flagged=_flagged(1 - score, 1 - stacked["runner_up"], config.flag_margin),
        score_kind=score_kind(config.method),
    )


def _verify(images: Tensor, dials: Tensor, level: Tensor, candidates: Tensor, candidate_roots: Tensor,
            placement: Placement, rotation: Tensor, principal: Tensor, focal: Tensor, aspect: float,
            config: WindowFitConfig) -> None:
    """Refine each query's best placements (and its best one leading to another wide view) to a
    rotation and zoom (:func:`fit_windows`), in place; placements not refined score −inf."""
    verified = torch.zeros_like(placement.score, dtype=torch.bool)
    for q, query in enumerate(level.tolist()):
        order = placement.score[q].argsort(descending=True)
        rivals = [int(c) for c in order if candidate_roots[c] != candidate_roots[order[0]]]
        chosen = [c for c in dict.fromkeys(order[: config.candidates].tolist() + rivals[:1]) if placement.score[q, c] > -1.0]
        for dial in torch.unique(dials[candidates[chosen]]) if chosen else []:  # one fit per template size
            group = [c for c in chosen if dials[candidates[c]] == dial]
            index = candidates[group]
            fits = fit_windows(images[query], images[index], focal[index], aspect, principal[query], principal[index],
                               rotation[q, group], placement.zoom[q, group], float(dials[query] / dial), config)
            for c, fit in zip(group, fits):
                placement.score[q, c], placement.zoom[q, c], rotation[q, c] = fit.score, fit.relative_zoom, fit.rotation
                verified[q, c] = True
    searched = (placement.score > -1.0).any(dim=1, keepdim=True)  # queries nothing could be searched for keep −1s
    placement.score.masked_fill_(~verified & searched, -math.inf)
    placement.centre.copy_(axis_pixel(rotation.reshape(-1, 3, 3), focal[candidates].repeat(level.numel()), aspect,
                                      principal[candidates].repeat(level.numel(), 1)).view_as(placement.centre))


def _choose(score: Tensor, centre: Tensor, principal: Tensor, size, within: float) -> Tensor:
    """Per query, the candidate nearest its view's centre (in fractions of the image size) among
    those scoring within ``within`` of the best."""
    height, width = int(size[0]), int(size[1])
    offset = (centre - principal[None]) / torch.tensor([width, height], dtype=centre.dtype)
    distance = offset.norm(dim=-1).masked_fill(score < score.max(dim=1, keepdim=True).values - within, math.inf)
    return distance.argmin(dim=1)


def _candidates(dials: Tensor, wide: Tensor, planned: Tensor, dial: Tensor, method: PrimingMethod) -> Tensor:
    """Images a query at ``dial`` may be placed in: the wide views, and for ``hierarchical`` every
    image already posed or planned at a smaller dial."""
    if method == "hierarchical":
        return torch.nonzero(wide | (planned & (dials < dial))).squeeze(-1)
    return torch.nonzero(wide).squeeze(-1)


# ---------------------------------------------------------------------- geometry


Lookup = Callable[[Tensor], Tuple[Tensor, Tensor]]
"""Image indices → their current (c2w, zoom)."""
Assign = Callable[[Tensor, Tensor, Tensor, Tensor], None]
"""(image indices, c2w, zoom, wide views) → start those images there."""


@torch.no_grad()
def apply_plan(plan: PrimingPlan, dials: Float[Tensor, "N"], lookup: Lookup, assign: Assign) -> None:
    """Prime the plan's queries level by level (so a chain's source is primed before its
    followers): each takes its source's camera turned by the plan's rotation about its optical
    centre, and the source's zoom × the matched relative zoom."""
    for rows in plan.levels(dials):
        source = plan.source[rows]
        source_c2w, source_zoom = lookup(source)
        source_c2w, source_zoom = source_c2w.cpu().float(), source_zoom.cpu().float()
        c2w = torch.cat([source_c2w[:, :, :3] @ plan.rotation[rows], source_c2w[:, :, 3:]], dim=-1)
        assign(plan.query[rows], c2w, source_zoom * plan.relative_zoom[rows], plan.root[rows])


# ---------------------------------------------------------------------- record, table, picture


class MatchRecord(nn.Module):
    """The priming of every training image, kept with the checkpoint (for the viewer and export)."""

    FIELDS = ("source", "centre", "relative_zoom", "score", "runner_up", "flagged")
    """The plan's rows kept (its wide view is the cameras' ``matched_wide``)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.register_buffer("source", torch.full((count,), -1, dtype=torch.long))
        self.register_buffer("centre", torch.zeros(count, 2))
        self.register_buffer("relative_zoom", torch.ones(count))
        self.register_buffer("score", torch.zeros(count))  # meaningful where source >= 0
        self.register_buffer("runner_up", torch.zeros(count))
        self.register_buffer("flagged", torch.zeros(count, dtype=torch.bool))

    @torch.no_grad()
    def record(self, plan: PrimingPlan) -> None:
        """Store a plan's rows at its queries' indices."""
        device = self.source.device
        index = plan.query.to(device)
        for name in self.FIELDS:
            value = getattr(plan, name).to(device=device, dtype=getattr(self, name).dtype)
            if value.is_floating_point():  # no rival: −inf → −1 (scores are NCC ≤ 1 or −MSE), checkpoints stay finite
                value = torch.nan_to_num(value, neginf=-1.0 if plan.score_kind == "ncc" else -1e6)
            getattr(self, name)[index] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # checkpoints written before issue 7 have no record: keep the defaults ("not recorded");
        # early issue-7 checkpoints also kept a copy of matched_wide ("root"): drop it
        for name in self.FIELDS:
            state_dict.setdefault(prefix + name, getattr(self, name))
        state_dict.pop(prefix + "root", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def frame_entry(self, index: int, names: Sequence[str], score_kind: str, matched_wide: int) -> Optional[Dict[str, object]]:
        """The export's ``mzen_match`` entry of one image primed from wide view ``matched_wide``
        (None when it was not primed)."""
        source = int(self.source[index])
        if source < 0:
            return None
        runner_up = float(self.runner_up[index])
        if runner_up <= (-1.0 if score_kind == "ncc" else -1e6):  # the stored "no rival"
            runner_up = -math.inf
        return match_entry(names[source], names[matched_wide], self.centre[index], float(self.relative_zoom[index]),
                           float(self.score[index]), runner_up, score_kind, bool(self.flagged[index]))


def match_entry(primed_from: str, matched_wide: str, centre: Tensor, relative_zoom: float, score: float,
                runner_up: float, score_kind: str, flagged: bool) -> Dict[str, object]:
    """How one image was primed, as written to ``crop_and_match.json`` and the export."""
    return {
        "primed_from": primed_from,
        "matched_wide": matched_wide,
        "window_centre_px": [round(float(v), 2) for v in centre],
        "relative_zoom": round(relative_zoom, 4),
        "score": score,
        "runner_up_score": runner_up if math.isfinite(runner_up) else None,
        "score_kind": score_kind,
        "flagged": flagged,
    }


def plan_rows(plan: PrimingPlan, names: Sequence[str], dials: Float[Tensor, "N"]) -> List[Dict[str, object]]:
    """One JSON-able row per query."""
    return [
        {"zoom_in": names[query], "dial": float(dials[query]),
         **match_entry(names[int(plan.source[row])], names[int(plan.root[row])], plan.centre[row],
                       float(plan.relative_zoom[row]), float(plan.score[row]), float(plan.runner_up[row]),
                       plan.score_kind, bool(plan.flagged[row]))}
        for row, query in enumerate(plan.query.tolist())
    ]


def plan_table(plan: PrimingPlan, names: Sequence[str], dials: Float[Tensor, "N"]) -> Table:
    """A rich table: zoom-in, dial, source (and its wide view), window position and zoom, scores, flag."""
    table = Table(title=f"priming: zoom-in → source view (score: {plan.score_kind})")
    for column in ("zoom-in", "dial", "primed from", "wide view", "window x, y", "zoom", "score", "runner-up", ""):
        table.add_column(column, justify="left" if column in ("zoom-in", "primed from", "wide view") else "right")
    for row in plan_rows(plan, names, dials):
        runner_up = row["runner_up_score"]
        table.add_row(
            str(row["zoom_in"]), f"{row['dial']:g}", str(row["primed_from"]), str(row["matched_wide"]),
            "{:.1f}, {:.1f}".format(*row["window_centre_px"]), f"{row['relative_zoom']:.3f}", f"{row['score']:.4f}",
            "n/a" if runner_up is None else f"{runner_up:.4f}", "[bold yellow]FLAGGED" if row["flagged"] else "",
        )
    return table


def save_plan_picture(
    plan: PrimingPlan, images: Float[Tensor, "N H W 3"], path: Path, names: Optional[Sequence[str]] = None
) -> Path:
    """Each zoom-in beside its source view with the matched window drawn on it (red if flagged)."""
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
        colour = (220, 0, 0) if bool(plan.flagged[row]) else (0, 200, 0)
        draw.rectangle([width + 4 + x - half_w, top + label + y - half_h, width + 4 + x + half_w, top + label + y + half_h],
                       outline=colour)
        flag = " FLAGGED" if bool(plan.flagged[row]) else ""
        draw.text((1, top), f"{_short(names, query)} <- {_short(names, source)} {float(plan.score[row]):.3f}{flag}",
                  fill=(0, 0, 0))
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


def principal_points(cx: Float[Tensor, "N"], cy: Float[Tensor, "N"]) -> Float[Tensor, "N 2"]:
    """(x, y) principal points from per-image ``cx``, ``cy``."""
    return torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=-1).float()
