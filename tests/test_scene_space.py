"""Scene parameterisations: nerfacto's contraction, scaled; the reference camera's NDC."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from nerfstudio.field_components.spatial_distortions import SceneContraction

from mzen_ns.scene_space import ForwardFacingNDC, ScaledContraction, make_scene_space
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
