"""Where a run's cameras start (:mod:`mzen_ns.placement`): the wide cameras from the ladder's
decision, and the solver that places views given the run's focal only where the run held it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mzen_ns.cameras import ZoomCameras
from mzen_ns.geometry.initialiser import Decision
from mzen_ns.geometry.solution import PlacedViews, WideSolution
from tests.helpers import zoom_cameras


def make_cameras() -> ZoomCameras:
    return zoom_cameras([1.0, 1.0, 4.0], focal_guess=50.0, width=32, height=24)


def outputs(focal_known: bool) -> SimpleNamespace:
    return SimpleNamespace(
        image_filenames=[Path("w0.png"), Path("w1.png"), Path("z0.png")],
        metadata={"mzen_focal_guess": (60.0, 60.0), "mzen_focal_known": focal_known, "mzen_principal_point": (16, 12)},
    )


def solution(held: bool) -> WideSolution:
    c2w = np.zeros((2, 3, 4))
    c2w[:, :, :3] = np.eye(3)
    c2w[1, :, 3] = [1.0, 0.0, 0.0]
    points = np.random.default_rng(0).normal(size=(100, 3)) + [0.5, 0.0, -3.0]
    evidence = {"focal_rise": 0.001 if held else 0.05, "focal_given_held": float(held)}
    return WideSolution("sfm", c2w, 60.0 if held else 57.0, points=points, evidence=evidence)


@pytest.mark.parametrize("held", [True, False])
def test_the_wide_cameras_start_from_the_decision_and_record_a_held_focal(monkeypatch, held: bool) -> None:
    from mzen_ns import placement
    from mzen_ns.geometry import initialiser

    asked = []

    def choose(init, paths, width, focal_prior, principal_point):
        asked.append((paths, focal_prior))
        return Decision("sfm", "because", solution(held))

    monkeypatch.setattr(initialiser, "choose", choose)
    cameras = make_cameras()
    decision = placement.start_wide_cameras(cameras, outputs(focal_known=True), "content", 1.0)
    assert asked == [([Path("w0.png"), Path("w1.png")], 60.0)]  # the wide views, with the scene's focal
    assert decision.focal_held == held and cameras.record.start.focal_held == held
    assert float(cameras.focal) == pytest.approx(60.0 if held else 57.0)
    centres = cameras.c2w(cameras.wide_index)[:, :, 3].detach()
    assert float(torch.linalg.norm(centres[1] - centres[0])) > 0  # the solution's poses, in the content frame


@pytest.mark.parametrize("held", [True, False])
def test_views_are_located_with_the_runs_focal_only_where_the_run_held_it(monkeypatch, held: bool) -> None:
    from mzen_ns import placement
    from mzen_ns.geometry import locate as locate_module

    cameras = make_cameras()
    cameras.start_wides("sfm", "because", torch.eye(4)[:3].expand(2, 3, 4), 60.0, focal_held=held)
    given = []

    def locate(rung, train_paths, train_c2w, wide_paths, zoom_ins, principal_point, support, focal_prior):
        given.append((rung, train_paths, train_c2w.shape, list(zoom_ins), focal_prior))
        return SimpleNamespace(views=PlacedViews.unplaced(len(zoom_ins)), reason="none placed")

    monkeypatch.setattr(locate_module, "locate", locate)
    placement.locate_in_run(cameras, outputs(focal_known=True), zoom_ins=[(Path("q.png"), 4.0)])
    [(rung, paths, shape, zoom_ins, focal_prior)] = given
    assert (rung, paths, shape, zoom_ins) == (
        "sfm",
        [Path("w0.png"), Path("w1.png")],
        (2, 3, 4),
        [(Path("q.png"), 4.0)],
    )
    assert focal_prior == (pytest.approx(60.0) if held else None)  # the run's focal (float32), where held


def test_placed_zoom_ins_start_with_their_wide_views_appearance() -> None:
    from mzen_ns.placement import copy_appearance

    weight = torch.arange(12.0).reshape(4, 3)
    model = SimpleNamespace(
        field=SimpleNamespace(embedding_appearance=SimpleNamespace(embedding=torch.nn.Embedding(4, 3)))
    )
    with torch.no_grad():
        model.field.embedding_appearance.embedding.weight.copy_(weight)
    copy_appearance(model, torch.tensor([2, 3]), torch.tensor([1, 0]))
    copied = model.field.embedding_appearance.embedding.weight.detach()
    assert torch.equal(copied, torch.stack([weight[0], weight[1], weight[1], weight[0]]))
    copy_appearance(SimpleNamespace(field=SimpleNamespace()), torch.tensor([2]), torch.tensor([1]))  # none to copy
