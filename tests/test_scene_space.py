"""Scene parameterisations: nerfacto's contraction, scaled; the reference camera's NDC."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from nerfstudio.field_components.spatial_distortions import SceneContraction

from mzen_ns.scene_space import (
    MAX_FINEST_RESOLUTION,
    ForwardFacingNDC,
    ScaledContraction,
    finest_resolution,
    local_scale,
    make_scene_space,
)
from tests.helpers import build, tiny_scene, tiny_trainer_config


def test_radius_one_is_nerfactos_contraction_and_radius_scales_it():
    points = torch.randn(500, 3) * 3
    assert torch.equal(ScaledContraction(1.0)(points), SceneContraction(order=float("inf"))(points))
    assert torch.allclose(ScaledContraction(2.0)(2 * points), SceneContraction(order=float("inf"))(points))
    inside = torch.tensor([[0.3, -0.2, -1.5]])
    assert torch.allclose(ScaledContraction(2.0)(inside), inside / 2)  # depth 1.5 stays in the linear region


def test_ndc_maps_the_reference_frustum_onto_the_grid_cube():
    ndc = ForwardFacingNDC(near=0.5, tan_half_fov_x=0.5, tan_half_fov_y=0.375)
    for depth in (0.5, 1.0, 7.0):
        corner = torch.tensor([[0.5 * depth, -0.375 * depth, -depth]])  # image corner at this depth
        x, y, z = ndc(corner)[0].tolist()
        assert x == pytest.approx(1.0) and y == pytest.approx(-1.0)
        assert z == pytest.approx(2.0 - 2.0 / depth)
    assert ndc(torch.tensor([[0.0, 0.0, -0.5]]))[0, 2] == pytest.approx(-2.0)  # near plane → -2
    assert ndc(torch.tensor([[0.0, 0.0, -1e6]]))[0, 2] == pytest.approx(2.0, abs=1e-5)  # infinity → 2
    behind = ndc(torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.0, -0.2]]))
    assert (behind[:, 2] < -2.0).all()  # behind the camera or nearer than near: outside the grid, dropped


def jacobian_scale(space: torch.nn.Module, points: torch.Tensor) -> torch.Tensor:
    """``|det J|^(1/3)`` of ``space`` at each point, from autograd's Jacobian."""
    jacobians = torch.func.vmap(torch.func.jacrev(lambda p: space(p[None])[0]))(points)
    return torch.linalg.det(jacobians).abs() ** (1.0 / 3.0)


@pytest.mark.parametrize(
    "space",
    [ScaledContraction(1.0), ScaledContraction(0.6), ForwardFacingNDC(0.3, 0.6, 0.45)],
    ids=["contraction", "contraction-radius-0.6", "ndc"],
)
def test_local_scale_in_closed_form_is_the_maps_jacobian(space):
    torch.manual_seed(0)
    points = torch.randn(400, 3, dtype=torch.float64) * 2.0
    points[:, 2] = -(points[:, 2].abs() + 0.35)  # in front of the camera, beyond NDC's near plane
    inside = points[:50] / (points[:50].abs().amax(dim=-1, keepdim=True) * 1.25) * 0.6  # the linear region
    points = torch.cat([inside, points])
    closed = space.local_scale(points)
    assert closed.shape == (450,)
    assert torch.allclose(closed, jacobian_scale(space, points), rtol=1e-6)
    assert torch.equal(local_scale(space, points), closed)  # mzen's own spaces take the closed form


def test_local_scale_of_any_other_distortion_is_its_finite_difference_jacobian():
    torch.manual_seed(1)
    points = torch.randn(300, 3, dtype=torch.float64) * 2.0
    nerfacto = SceneContraction(order=float("inf"))
    assert torch.allclose(local_scale(nerfacto, points), ScaledContraction(1.0).local_scale(points), rtol=1e-4)


def test_ndc_is_differentiable_for_pose_gradients():
    ndc = ForwardFacingNDC(near=0.5, tan_half_fov_x=0.5, tan_half_fov_y=0.5)
    point = torch.tensor([[0.2, 0.1, -2.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: ndc(p), (point,))


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="radius"):
        ScaledContraction(0.0)
    with pytest.raises(ValueError, match="near"):
        ForwardFacingNDC(near=-1.0, tan_half_fov_x=0.5, tan_half_fov_y=0.5)
    with pytest.raises(ValueError, match="field of view"):
        make_scene_space("ndc", contraction_radius=1.0, ndc_near=0.5)


@pytest.mark.parametrize("parameterisation", ["contraction", "ndc"])
@pytest.mark.slow
def test_every_field_of_the_model_uses_the_configured_space(tmp_path: Path, parameterisation):
    config = tiny_trainer_config(tiny_scene(tmp_path / "scene"), tmp_path / "out", steps=4)
    model = replace(
        config.pipeline.model, parameterisation=parameterisation, contraction_radius=2.0, ndc_near=0.5, near_plane=0.5
    )
    config = replace(config, pipeline=replace(config.pipeline, model=model))
    trainer = build(config)
    mzen = trainer.pipeline.model
    spaces = [m.spatial_distortion for m in [mzen.field, *mzen.proposal_networks]]
    expected = ForwardFacingNDC if parameterisation == "ndc" else ScaledContraction
    assert all(isinstance(s, expected) for s in spaces) and len({id(s) for s in spaces}) == 1
    trainer.train()  # and it trains
    assert all(torch.isfinite(p).all() for p in mzen.parameters())


def test_the_finest_resolution_follows_the_deepest_zoom_and_the_view_width():
    at_4x = finest_resolution("contraction", 128, 4.0, base_res=16)
    assert finest_resolution("contraction", 128, 16.0, base_res=16) == 4 * at_4x  # four times deeper, four times finer
    assert finest_resolution("contraction", 512, 4.0, base_res=16) == 4 * at_4x  # and so with four times the pixels
    assert at_4x * 0.25 == 128 * 4  # one cell per 4× pixel across the content (a quarter of the contracted cube)
    assert finest_resolution("ndc", 128, 16.0, base_res=16) == 128 * 16 * 2  # NDC: the view spans half the cube
    assert finest_resolution("contraction", 8, 1.0, base_res=16) == 32  # never below twice the coarsest level
    assert finest_resolution("contraction", 4096, 64.0, base_res=16) == MAX_FINEST_RESOLUTION
    for width, zoom in ((0, 4.0), (128, 0.5), (128, float("nan"))):
        with pytest.raises(ValueError, match="finest_resolution"):
            finest_resolution("contraction", width, zoom, base_res=16)


@pytest.mark.parametrize("deepest", [4.0, 16.0])
def test_an_automatic_field_is_as_fine_as_the_scenes_deepest_zoom_in(tmp_path: Path, deepest: float, capsys):
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    scene = tmp_path / "scene"
    make_scene(SceneMakerConfig(output=scene, width=32, height=24, zooms=(1.0, deepest), n_wide=3, n_zoom=2, seed=0))
    config = tiny_trainer_config(scene, tmp_path / "out", steps=1)
    config.pipeline.model.max_res = None
    model = build(config).pipeline.model
    expected = finest_resolution("contraction", 32, deepest, base_res=model.config.base_res)
    assert model.config.max_res == expected and config.pipeline.model.max_res is None  # the run's config keeps "auto"
    scalings = next(m for m in model.field.mlp_base.modules() if hasattr(m, "scalings")).scalings
    assert abs(float(scalings[-1]) - expected) <= 1  # the field's finest level
    assert f"finest grid resolution {expected}" in capsys.readouterr().out
