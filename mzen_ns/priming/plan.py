"""Planning where each zoom-in (or held-out view) starts, and priming it there.

Three methods, the ``method`` of :class:`PrimingConfig`:

- ``centred``: the paper's crop-and-match — the central ``1/dial`` crop of every wide view,
  compared by MSE (:mod:`mzen_ns.priming.centred`); the zoom-in takes the best wide view's pose.
- ``position``: the zoom-in's footprint is searched anywhere in every wide view
  (:mod:`mzen_ns.priming.search`); the best placements are refined to the rotation and zoom of a
  camera turning about the candidate's optical centre (:mod:`mzen_ns.priming.verify`), which tells
  the view the zoom-in was taken from apart from neighbours that see the same patch with parallax.
- ``hierarchical``: as ``position``, and a deeper zoom-in is also searched in the zoom-ins of
  lower levels (primed before it); the best placement wins and the pose is composed through the
  chain (wide → 4× → 16×).

Every placement carries its score and the best score of a placement that shows another part of
the scene (the same patch seen from a neighbouring wide view, or through a shallower zoom-in, is
not a rival); a zoom-in whose best is not clearly better than that runner-up is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, Iterator, List, Literal, Optional, Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from typing_extensions import assert_never

from mzen_ns.priming.centred import crop_and_match
from mzen_ns.priming.noise import attainable_ncc
from mzen_ns.priming.search import PositionSearchConfig, WindowMatches, corresponding, search_positions
from mzen_ns.priming.verify import WindowFitConfig, axis_pixel, fit_windows, window_rotation

PrimingMethod = Literal["centred", "position", "hierarchical"]
ScoreKind = Literal["ncc", "-mse"]


def score_kind(method: PrimingMethod) -> ScoreKind:
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
    """``centred`` (paper), ``position`` (searched in wide views) or ``hierarchical`` (also in shallower zoom-ins)."""
    geometry: bool = True
    """After an ``sfm`` start, register zoom-ins against its 3D points first; ``method`` places the rest."""
    search: PositionSearchConfig = field(default_factory=PositionSearchConfig)
    """Position search (``position``, ``hierarchical``)."""
    fit: WindowFitConfig = field(default_factory=WindowFitConfig)
    """Refinement of the best placements to a rotation and zoom (``position``, ``hierarchical``)."""
    centred_work_width: int = 64
    """``centred``: width of the copies all pairs are scored on before the best 3 are re-scored exactly."""
    prefer_centre_within: float = 0.0
    """Among placements within this NCC of the best, the one nearest its view's centre wins (0: best score only)."""
    prefer_deeper_within: float = 0.02
    """Among placements within this NCC of the best, those in the deepest candidate win (more pixels in the window)."""
    flag_margin: float = 0.3
    """Flag a zoom-in when the runner-up's misfit exceeds the best's by less than this fraction of the best's."""
    field_check: bool = True
    """Where a placement has a rival elsewhere in the scene, the field rendered at both decides (position search)."""
    noise_floor: float = 0.9
    """Flag a searched zoom-in whose NCC is under this share of what the images' noise allows (0: never)."""


@dataclass
class Views:
    """The images priming works on and what is known of their cameras, all indexed alike."""

    images: Float[Tensor, "N H W 3"]
    """RGB in [0, 1]."""
    dials: Float[Tensor, " N"]
    """Dial reading, normalised so that the widest level reads 1."""
    principal: Float[Tensor, "N 2"]
    """Principal point (x, y) in pixels."""
    focal: Float[Tensor, " N"]
    """Current focal fx in pixels (base focal × zoom); only the posed images' values are used."""
    aspect: float
    """fy / fx of every image."""
    orientation: Optional[Float[Tensor, "N 3 3"]] = None
    """Current camera-to-world rotation; only the posed images' are used (None: unknown)."""

    def __len__(self) -> int:
        return int(self.dials.numel())

    def cat(self, other: "Views") -> "Views":
        """These views followed by ``other``'s (same size and aspect; orientations kept when both have them)."""
        orientation = None
        if self.orientation is not None and other.orientation is not None:
            orientation = torch.cat([self.orientation, other.orientation])
        return Views(
            torch.cat([self.images, other.images]),
            torch.cat([self.dials, other.dials]),
            torch.cat([self.principal, other.principal]),
            torch.cat([self.focal, other.focal]),
            self.aspect,
            orientation,
        )


@dataclass
class PrimingPlan:
    """Where every query (zoom-in or held-out view) starts, and how sure the match is."""

    query: Int[Tensor, " Q"]
    """Image indices of the queries."""
    source: Int[Tensor, " Q"]
    """Image index each query is primed from (a wide view, or a lower-level image)."""
    root: Int[Tensor, " Q"]
    """Wide view at the end of the chain (``source`` itself when it is wide)."""
    centre: Float[Tensor, "Q 2"]
    """Window centre (x, y) in the source's pixels (its principal point for ``centred``)."""
    relative_zoom: Float[Tensor, " Q"]
    """Query zoom over the source's, as matched."""
    rotation: Float[Tensor, "Q 3 3"]
    """Query camera's orientation in the source camera's frame (identity for ``centred``)."""
    score: Float[Tensor, " Q"]
    """Match score, higher is better (NCC; −MSE for ``centred``)."""
    runner_up: Float[Tensor, " Q"]
    """Best score of a placement showing another part of the scene (−inf: there is none)."""
    flagged: Bool[Tensor, " Q"]
    """Best match not clearly better than the runner-up."""
    score_kind: ScoreKind
    """``ncc`` or ``-mse`` (of the rows placed by the window search)."""
    geometric: Optional[Bool[Tensor, " Q"]] = None
    """Rows placed by 2D–3D registration (their ``score``: the correspondences); ``None``: none."""
    field_ncc: Optional[Float[Tensor, "Q 2"]] = None
    """NCC of the field rendered at the chosen placement and at the runner-up's (:data:`Judge`); NaN: not rendered."""
    attainable: Optional[Float[Tensor, " Q"]] = None
    """Window NCC the images' noise allows a right placement (:func:`attainable_ncc`); NaN: not a window search."""

    def __post_init__(self) -> None:
        if self.geometric is None:
            self.geometric = torch.zeros(self.query.numel(), dtype=torch.bool)
        if self.field_ncc is None:
            self.field_ncc = torch.full((self.query.numel(), 2), math.nan)
        if self.attainable is None:
            self.attainable = torch.full((self.query.numel(),), math.nan)

    def cat(self, other: "PrimingPlan") -> "PrimingPlan":
        """This plan's rows followed by ``other``'s (score kind: the one with window-search rows, else this)."""
        assert self.geometric is not None and other.geometric is not None
        assert self.field_ncc is not None and other.field_ncc is not None
        assert self.attainable is not None and other.attainable is not None
        kind = (
            other.score_kind
            if bool((~other.geometric).any()) and not bool((~self.geometric).any())
            else self.score_kind
        )
        joined = {
            name: torch.cat([getattr(self, name), getattr(other, name)])
            for name in ("query", "source", "root", "centre", "relative_zoom", "rotation", "score", "runner_up")
        }
        flagged = torch.cat([self.flagged, other.flagged])
        return PrimingPlan(
            **joined,
            flagged=flagged,
            score_kind=kind,
            geometric=torch.cat([self.geometric, other.geometric]),
            field_ncc=torch.cat([self.field_ncc, other.field_ncc]),
            attainable=torch.cat([self.attainable, other.attainable]),
        )

    def levels(self, dials: Float[Tensor, " N"]) -> Iterator[Int[Tensor, " K"]]:
        """Rows of the plan grouped by the queries' dial, shallowest first (a chain's source is
        always primed before the images primed from it)."""
        query_dials = dials[self.query]
        for dial in torch.unique(query_dials):
            yield torch.nonzero(query_dials == dial).squeeze(-1)


@dataclass
class CandidateCamera:
    """A query's camera as one placement puts it: turned about its wide view's optical centre."""

    root: int
    """The wide view whose optical centre the camera shares (an index into the plan's views)."""
    orientation: Float[Tensor, "3 3"]
    """Camera-to-world rotation (OpenGL axes)."""
    fx: float
    """Focal in pixels."""
    root_fx: float
    """The wide view's focal in pixels: the field, fitted to the wide views, resolves detail down to its pixel."""
    principal: Float[Tensor, "2"]
    """The query's principal point (x, y) in pixels."""


Judge = Callable[[Float[Tensor, "H W 3"], CandidateCamera], float]
"""(query image, a candidate camera) → how well what the field shows there agrees with the image (NCC)."""


def plan_priming(
    views: Views,
    posed: Bool[Tensor, " N"],
    roots: Int[Tensor, " N"],
    config: PrimingConfig,
    judge: Optional[Judge] = None,
) -> PrimingPlan:
    """Plan the priming of every view that is not ``posed`` from the posed ones. ``roots`` gives
    each posed view's wide view (itself for a wide view); wide views are the posed views at the
    smallest dial. ``judge``, where given (and ``config.field_check``), decides between a query's
    best placement and its rival (:func:`_field_decision`); it needs ``views.orientation``."""
    wide = posed & (views.dials == views.dials[posed].min())
    if bool(posed.all()):
        return empty_plan(score_kind(config.method))
    if config.method == "centred":
        return _plan_centred(views, wide, torch.nonzero(~posed).squeeze(-1), config)
    if config.method in ("position", "hierarchical"):
        use_judge = judge if config.field_check and views.orientation is not None else None
        return _plan_search(views, posed, wide, roots, config, use_judge)
    assert_never(config.method)


def empty_plan(kind: ScoreKind) -> PrimingPlan:
    """A plan with no rows."""
    none = torch.zeros(0)
    return PrimingPlan(
        none.long(),
        none.long(),
        none.long(),
        none.reshape(0, 2),
        none,
        none.reshape(0, 3, 3),
        none,
        none,
        none.bool(),
        kind,
    )


def placed_plan(
    query: Int[Tensor, " Q"],
    rotation: Float[Tensor, "Q 3 3"],
    relative_zoom: Float[Tensor, " Q"],
    source: Int[Tensor, " Q"],
    inliers: Float[Tensor, " Q"],
    source_fx: Float[Tensor, " Q"],
    principal: Float[Tensor, "Q 2"],
    aspect: float,
    kind: ScoreKind,
) -> PrimingPlan:
    """Plan rows of queries already placed by 2D–3D registration, from their wide view ``source``:
    ``rotation`` and ``relative_zoom`` relative to it, its focal ``source_fx`` and principal point;
    the window is where the query's axis meets it, the score its ``inliers``, never flagged."""
    count = query.numel()
    return PrimingPlan(
        query=query,
        source=source,
        root=source.clone(),
        centre=axis_pixel(rotation, source_fx, aspect, principal),
        relative_zoom=relative_zoom,
        rotation=rotation,
        score=inliers.float(),
        runner_up=torch.full((count,), -math.inf),
        flagged=torch.zeros(count, dtype=torch.bool),
        score_kind=kind,
        geometric=torch.ones(count, dtype=torch.bool),
    )


def _plan_centred(views: Views, wide: Tensor, query: Tensor, config: PrimingConfig) -> PrimingPlan:
    wide_idx = torch.nonzero(wide).squeeze(-1)
    subset = torch.cat([wide_idx, query])
    is_wide = torch.zeros(subset.numel(), dtype=torch.bool)
    is_wide[: wide_idx.numel()] = True
    result = crop_and_match(views.images[subset], views.dials[subset], is_wide, work_width=config.centred_work_width)
    source = subset[result.matched]
    return PrimingPlan(
        query=query,
        source=source,
        root=source.clone(),
        centre=views.principal[source].clone(),
        relative_zoom=views.dials[query] / views.dials[source],
        rotation=torch.eye(3).expand(query.numel(), 3, 3).clone(),
        score=-result.mse,
        runner_up=-result.runner_up_mse,
        flagged=_flagged(result.mse, result.runner_up_mse, config.flag_margin),
        score_kind=score_kind(config.method),
    )


def _flagged(misfit: Tensor, runner_up_misfit: Tensor, margin: float) -> Tensor:
    """The runner-up's misfit exceeds the best's by less than ``margin`` × the best's."""
    return (runner_up_misfit - misfit) < margin * misfit


def _attainable(
    images: Float[Tensor, "N H W 3"], query: Int[Tensor, " Q"], source: Int[Tensor, " Q"], zoom: Float[Tensor, " Q"]
) -> Float[Tensor, " Q"]:
    """Per query, the window NCC its and its source's noise allow a right placement."""
    return torch.tensor(
        [attainable_ncc(images[q], images[s], float(z)) for q, s, z in zip(query.tolist(), source.tolist(), zoom)]
    )


def _below_noise_floor(score: Float[Tensor, " Q"], attainable: Float[Tensor, " Q"], floor: float) -> Bool[Tensor, " Q"]:
    """The window NCC is under ``floor`` × what the noise allows: the zoom-in does not show that window
    (a chain through a shallower zoom-in that does not contain it; a patch its wide view barely resolves)."""
    return (score < floor * attainable) & (floor > 0)


def _plan_search(
    views: Views, posed: Tensor, wide: Tensor, roots: Tensor, config: PrimingConfig, judge: Optional[Judge]
) -> PrimingPlan:
    root = torch.where(posed, roots, torch.full_like(roots, -1))
    planned = posed.clone()
    focal = views.focal.float().clone()  # filled in for each level as it is planned (chains)
    rows: Dict[str, List[Tensor]] = {
        key: []
        for key in (
            "query",
            "source",
            "centre",
            "zoom",
            "rotation",
            "score",
            "runner_up",
            "flagged",
            "field_ncc",
            "attainable",
        )
    }
    to_root = _orientations_in_roots(views, posed, wide, root)
    queries = torch.nonzero(~posed).squeeze(-1)
    for dial in torch.unique(views.dials[queries]):
        level = queries[views.dials[queries] == dial]
        candidates = _candidates(views.dials, wide, planned, dial, config.method)
        placement, rotation, best = _place_level(views, focal, level, candidates, root[candidates], config)
        runner_up, rival = _runner_up(views, focal, to_root, root, candidates, placement, rotation, best)
        flagged = _flagged(1 - placement.score[torch.arange(level.numel()), best], 1 - runner_up, config.flag_margin)
        field_ncc = torch.full((level.numel(), 2), math.nan)
        if judge is not None:
            cameras = partial(_candidate_camera, views, focal, to_root, root, candidates, level, placement, rotation)
            best, runner_up, flagged, field_ncc = _field_decision(
                views.images[level],
                cameras,
                placement.score,
                best,
                rival,
                runner_up,
                flagged,
                judge,
                config.flag_margin,
            )
        chosen = (torch.arange(level.numel()), best)
        source = candidates[best]
        attainable = _attainable(views.images, level, source, placement.zoom[chosen])
        flagged = flagged | _below_noise_floor(placement.score[chosen], attainable, config.noise_floor)
        rows["query"].append(level)
        rows["source"].append(source)
        rows["centre"].append(placement.centre[chosen])
        rows["zoom"].append(placement.zoom[chosen])
        rows["rotation"].append(rotation[chosen])
        rows["score"].append(placement.score[chosen])
        rows["runner_up"].append(runner_up)
        rows["flagged"].append(flagged)
        rows["field_ncc"].append(field_ncc)
        rows["attainable"].append(attainable)
        root[level] = root[source]
        focal[level] = focal[source] * placement.zoom[chosen]
        planned[level] = True
        for q, s, r in zip(level.tolist(), source.tolist(), rotation[chosen]):
            if s in to_root:
                to_root[q] = to_root[s] @ r
    stacked = {key: torch.cat(value) if value else torch.empty(0) for key, value in rows.items()}
    query = stacked["query"].long()
    return PrimingPlan(
        query=query,
        source=stacked["source"].long(),
        root=root[query],
        centre=stacked["centre"].reshape(-1, 2),
        relative_zoom=stacked["zoom"],
        rotation=stacked["rotation"].reshape(-1, 3, 3),
        score=stacked["score"],
        runner_up=stacked["runner_up"],
        flagged=stacked["flagged"].bool(),
        score_kind=score_kind(config.method),
        field_ncc=stacked["field_ncc"].reshape(-1, 2),
        attainable=stacked["attainable"],
    )


def _field_decision(
    images: Float[Tensor, "Q H W 3"],
    cameras: Callable[[int, int], Optional[CandidateCamera]],
    score: Float[Tensor, "Q C"],
    best: Int[Tensor, " Q"],
    rival: Int[Tensor, " Q"],
    runner_up: Float[Tensor, " Q"],
    flagged: Bool[Tensor, " Q"],
    judge: Judge,
    margin: float,
) -> Tuple[Int[Tensor, " Q"], Float[Tensor, " Q"], Bool[Tensor, " Q"], Float[Tensor, "Q 2"]]:
    """The field's verdict between each query's best placement and its rival (another part of the
    scene): the field, which explains every wide view at once, is rendered at both cameras and
    compared with the query. Where it clearly prefers one (by the flag margin), that one is chosen —
    flagged if the windows had clearly preferred the other; where it cannot tell, the windows decide
    and flag as before. Returns (choice, its runner-up's window score, flagged, field NCC of the
    chosen and of the other); a query without a rival keeps its choice and flag, its field NCC
    reported (the other NaN)."""
    best, runner_up, flagged = best.clone(), runner_up.clone(), flagged.clone()
    ncc_of = torch.full((best.numel(), 2), math.nan)
    for q in range(best.numel()):
        b, r = int(best[q]), int(rival[q])
        first = cameras(q, b)
        second = cameras(q, r) if r >= 0 and first is not None else None
        if first is None:
            continue
        if second is None:  # no rival: the field's agreement is only reported
            ncc_of[q, 0] = judge(images[q], first)
            continue
        ncc = torch.tensor([judge(images[q], first), judge(images[q], second)])
        if not bool(torch.isfinite(ncc).all()):
            continue
        ncc_of[q] = ncc
        if not bool(_flagged(1 - ncc[1], 1 - ncc[0], margin)):  # the field clearly prefers the rival
            best[q], runner_up[q], ncc_of[q] = r, score[q, b], ncc.flip(0)
            flagged[q] = not bool(flagged[q])  # the windows had clearly said otherwise
        elif not bool(_flagged(1 - ncc[0], 1 - ncc[1], margin)):
            flagged[q] = False
    return best, runner_up, flagged, ncc_of


def _candidate_camera(
    views: Views,
    focal: Tensor,
    to_root: Dict[int, Tensor],
    root: Tensor,
    candidates: Tensor,
    level: Tensor,
    placement: WindowMatches,
    rotation: Tensor,
    q: int,
    c: int,
) -> Optional[CandidateCamera]:
    """The camera query ``level[q]`` gets from placement ``c`` (None where its source's orientation
    in its wide view is unknown)."""
    source = int(candidates[c])
    if source not in to_root or views.orientation is None:
        return None
    wide = int(root[source])
    return CandidateCamera(
        root=wide,
        orientation=views.orientation[wide].float() @ to_root[source] @ rotation[q, c],
        fx=float(focal[source] * placement.zoom[q, c]),
        root_fx=float(focal[wide]),
        principal=views.principal[int(level[q])],
    )


def _orientations_in_roots(views: Views, posed: Tensor, wide: Tensor, root: Tensor) -> Dict[int, Tensor]:
    """Each posed image's orientation in its wide view's frame, where known: the wide views', and
    the other posed images' when ``views`` has orientations."""
    to_root = {int(w): torch.eye(3) for w in torch.nonzero(wide).squeeze(-1)}
    if views.orientation is not None:
        for k in torch.nonzero(posed & ~wide & (root >= 0)).squeeze(-1).tolist():
            to_root[k] = views.orientation[root[k]].float().T @ views.orientation[k].float()
    return to_root


def _runner_up(
    views: Views,
    focal: Tensor,
    to_root: Dict[int, Tensor],
    root: Tensor,
    candidates: Tensor,
    placement: WindowMatches,
    rotation: Tensor,
    best: Tensor,
) -> Tuple[Float[Tensor, " Q"], Int[Tensor, " Q"]]:
    """Per query, the best score of a placement that shows another part of the scene than the chosen
    one, and that placement (−inf and −1 where there is none). Where both placements' windows in
    their wide views are known, that is decided by the windows: the same place in one wide view, or
    corresponding places in two (:func:`~mzen_ns.priming.search.corresponding`) — overlapping wide
    views all see the zoom-in's patch, and the same patch seen from a neighbour or through a
    shallower zoom-in is no rival. Otherwise every placement leading to another wide view is a rival."""
    runner_up = torch.full((len(best),), -math.inf)
    rival = torch.full((len(best),), -1, dtype=torch.long)
    for q, b in enumerate(best.tolist()):
        chosen = _root_window(views, focal, to_root, root, int(candidates[b]), rotation[q, b], placement.zoom[q, b])
        chosen_root = int(root[candidates[b]])
        for c in placement.score[q].argsort(descending=True).tolist():
            score = float(placement.score[q, c])
            if not score > -1.0:
                break
            if c == b:
                continue
            other_root = int(root[candidates[c]])
            other = _root_window(views, focal, to_root, root, int(candidates[c]), rotation[q, c], placement.zoom[q, c])
            if chosen is None or other is None:
                same = other_root == chosen_root
            elif other_root == chosen_root:
                same = float((chosen[0] - other[0]).norm()) <= 0.5 * other[1]
            else:
                same = _turned_onto(views, focal, chosen_root, chosen, other_root, other) or corresponding(
                    views.images[chosen_root], *chosen, views.images[other_root], *other
                )
            if not same:
                runner_up[q], rival[q] = score, c
                break
    return runner_up, rival


def _turned_onto(
    views: Views,
    focal: Tensor,
    first: int,
    first_window: Tuple[Tensor, float],
    second: int,
    second_window: Tuple[Tensor, float],
) -> bool:
    """Whether the centre of a window of wide view ``first``, carried into wide view ``second`` by the
    rotation between their cameras, lands within half of ``second_window`` (False where orientations
    are unknown). Two views from one optical centre (stage drift) see every point where that
    rotation says, whatever its depth; with a baseline the parallax moves it away, and
    :func:`~mzen_ns.priming.search.corresponding` decides."""
    if views.orientation is None:
        return False
    fx = focal[[first]]
    window = window_rotation(first_window[0][None].float(), views.principal[[first]], fx, fx * views.aspect)
    turned = views.orientation[second].float().T @ views.orientation[first].float() @ window
    seen = axis_pixel(turned, focal[[second]], views.aspect, views.principal[[second]])[0]
    return float((seen - second_window[0].float()).norm()) <= 0.5 * second_window[1]


def _root_window(
    views: Views, focal: Tensor, to_root: Dict[int, Tensor], root: Tensor, source: int, rotation: Tensor, zoom: Tensor
) -> Optional[Tuple[Tensor, float]]:
    """(centre, width) in pixels of a placement's window in its wide view (``rotation``, ``zoom``:
    the query relative to ``source``), or None where the source's orientation there is unknown."""
    if source not in to_root:
        return None
    wide = int(root[source])
    centre = axis_pixel(
        (to_root[source] @ rotation)[None], focal[wide][None], views.aspect, views.principal[wide][None]
    )
    return centre[0], float(views.images.shape[2] * focal[wide] / (focal[source] * zoom))


def _place_level(
    views: Views, focal: Tensor, level: Tensor, candidates: Tensor, candidate_roots: Tensor, config: PrimingConfig
) -> Tuple[WindowMatches, Tensor, Tensor]:
    """Search one level's queries in the candidates, verify the best placements, choose one per
    query: (placements, rotations, the chosen candidate's position per query)."""
    count = level.numel()
    relative_zoom = views.dials[level][:, None] / views.dials[candidates][None, :]
    placement = search_positions(views.images[level], views.images[candidates], relative_zoom, config.search)
    principal, fx = views.principal[candidates].repeat(count, 1), focal[candidates].repeat(count)
    rotation = window_rotation(placement.centre.reshape(-1, 2), principal, fx, fx * views.aspect).view(count, -1, 3, 3)
    if config.fit.candidates > 0:
        _verify(views, focal, level, candidates, candidate_roots, placement, rotation, config.fit)
    best = _choose(
        _deepest_within(placement.score, views.dials[candidates], config.prefer_deeper_within),
        placement.centre,
        views.principal[candidates],
        views.images.shape[1:3],
        config.prefer_centre_within,
    )
    return placement, rotation, best


def _verify(
    views: Views,
    focal: Tensor,
    level: Tensor,
    candidates: Tensor,
    candidate_roots: Tensor,
    placement: WindowMatches,
    rotation: Tensor,
    config: WindowFitConfig,
) -> None:
    """Refine each query's best placements (and its best one leading to another wide view) to a
    rotation and zoom (:func:`fit_windows`), in place; placements not refined score −inf."""
    verified = torch.zeros_like(placement.score, dtype=torch.bool)
    for q, query in enumerate(level.tolist()):
        for group in _fit_groups(views.dials, candidates, candidate_roots, placement.score[q], config.candidates):
            index = candidates[group]
            fits = fit_windows(
                views.images[query],
                views.images[index],
                focal[index],
                views.aspect,
                views.principal[query],
                views.principal[index],
                rotation[q, group],
                placement.zoom[q, group],
                float(views.dials[query] / views.dials[index[0]]),
                config,
                _dial_zoom(views, focal, query, index, candidate_roots[group]),
            )
            for c, fit in zip(group, fits):
                placement.score[q, c], placement.zoom[q, c], rotation[q, c] = fit.score, fit.relative_zoom, fit.rotation
                verified[q, c] = True
    searched = (placement.score > -1.0).any(dim=1, keepdim=True)  # queries nothing could be searched for keep −1s
    placement.score.masked_fill_(~verified & searched, -math.inf)
    count = level.numel()
    centre = axis_pixel(
        rotation.reshape(-1, 3, 3),
        focal[candidates].repeat(count),
        views.aspect,
        views.principal[candidates].repeat(count, 1),
    )
    placement.centre.copy_(centre.view_as(placement.centre))


def _dial_zoom(views: Views, focal: Tensor, query: int, candidates: Tensor, roots: Tensor) -> Tensor:
    """The query's zoom relative to each candidate that the dials say: the query's dial over its
    candidate's root wide view's, at that wide view's focal, over the candidate's current focal
    (a shallower zoom-in's fitted zoom, not its dial)."""
    return focal[roots] * views.dials[query] / (views.dials[roots] * focal[candidates])


def _fit_groups(dials: Tensor, candidates: Tensor, candidate_roots: Tensor, score: Tensor, top: int) -> List[List[int]]:
    """The candidates (positions in ``candidates``) of one query to refine, grouped by dial (one
    fit per template size): its ``top`` best and its best one leading to another wide view,
    among those the search could place."""
    order = score.argsort(descending=True)
    rivals = [int(c) for c in order if candidate_roots[c] != candidate_roots[order[0]]]
    chosen = [c for c in dict.fromkeys(order[:top].tolist() + rivals[:1]) if score[c] > -1.0]
    if not chosen:
        return []
    chosen_dials = dials[candidates[chosen]]
    return [[c for c, d in zip(chosen, chosen_dials) if d == dial] for dial in torch.unique(chosen_dials)]


def _deepest_within(score: Tensor, dials: Tensor, within: float) -> Tensor:
    """``score`` with every placement masked (−inf) but those in the deepest candidate among the
    ones within ``within`` of each query's best: a shallower zoom-in's window has more pixels than a
    wide view's, so it places the query more precisely when both fit about as well."""
    near = score >= score.max(dim=1, keepdim=True).values - within
    depth = dials[None].expand_as(score).masked_fill(~near, -math.inf)
    return score.masked_fill(depth < depth.max(dim=1, keepdim=True).values, -math.inf)


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


Lookup = Callable[[Tensor], Tuple[Tensor, Tensor]]
"""Image indices → their current (c2w, zoom)."""
Assign = Callable[[Tensor, Tensor, Tensor, Tensor], None]
"""(image indices, c2w, zoom, wide views) → start those images there."""


@torch.no_grad()
def apply_plan(plan: PrimingPlan, dials: Float[Tensor, " N"], lookup: Lookup, assign: Assign) -> None:
    """Prime the plan's queries level by level (so a chain's source is primed before its
    followers): each takes its source's camera turned by the plan's rotation about its optical
    centre, and the source's zoom × the matched relative zoom."""
    for rows in plan.levels(dials):
        source_c2w, source_zoom = lookup(plan.source[rows])
        source_c2w, source_zoom = source_c2w.cpu().float(), source_zoom.cpu().float()
        c2w = torch.cat([source_c2w[:, :, :3] @ plan.rotation[rows], source_c2w[:, :, 3:]], dim=-1)
        assign(plan.query[rows], c2w, source_zoom * plan.relative_zoom[rows], plan.root[rows])
