"""Footprint-aware hash levels: per-level weights from each sample's pixel footprint (Zip-NeRF)."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.fields.nerfacto_field import NerfactoField

from mzen_ns.encoding import (
    FootprintHook,
    SmoothGradientHashEncoding,
    footprint_weights,
    sample_footprint,
    use_smooth_gradient_encodings,
)
from mzen_ns.scene_space import ScaledContraction
from tests.helpers import zoom_cameras

RESOLUTIONS = torch.tensor([16.0, 64.0, 256.0, 1024.0])


def test_coarse_levels_are_untouched_when_the_footprint_is_small():
    weights = footprint_weights(torch.tensor([1e-5, 1e-4]), RESOLUTIONS)
    assert weights.shape == (2, 4)
    assert torch.allclose(weights, torch.ones_like(weights), atol=1e-6)


def test_fine_levels_are_suppressed_when_the_footprint_is_large():
    weights = footprint_weights(torch.tensor(0.01), RESOLUTIONS)  # a footprint 1/100 of the cube
    assert weights[0] > 0.98  # cells of 1/16: resolved
    assert weights[-1] < 0.05  # cells of 1/1024: ten to a footprint
    assert torch.all(weights[1:] < weights[:-1])


def test_weights_are_continuous_and_fall_with_the_footprint():
    sigma = torch.logspace(-6, 0, 2001)
    weights = footprint_weights(sigma, RESOLUTIONS)
    steps = (weights[1:] - weights[:-1]).abs().max()
    assert steps < 0.02  # no jump between neighbouring footprints 0.7% apart
    assert torch.all(weights[1:] <= weights[:-1] + 1e-7)


def test_weights_depend_on_footprint_times_resolution_only():
    sigma = torch.tensor([0.003, 0.02])
    assert torch.allclose(footprint_weights(sigma, RESOLUTIONS), footprint_weights(sigma / 4, 4 * RESOLUTIONS))


def grid() -> SmoothGradientHashEncoding:
    torch.manual_seed(0)
    encoding = SmoothGradientHashEncoding(
        num_levels=4, min_res=4, max_res=256, log2_hashmap_size=10, implementation="torch"
    )
    with torch.no_grad():
        encoding.hash_table.uniform_(-1.0, 1.0)
    return encoding


def test_encoding_scales_each_levels_features_by_its_weight():
    encoding = grid()
    points = torch.rand(64, 3)
    plain = encoding(points).view(64, 4, -1)
    encoding.footprint = torch.full((64,), 0.004)
    weighted = encoding(points).view(64, 4, -1)
    expected = plain * footprint_weights(encoding.footprint, encoding.scalings)[..., None]
    assert torch.allclose(weighted, expected, atol=1e-6)
    assert weighted[:, -1].abs().max() < 0.5 * plain[:, -1].abs().max()  # the finest level turned down
    encoding.footprint = torch.full((63,), 0.004)
    with pytest.raises(ValueError, match="footprint of shape"):
        encoding(points)


def field() -> NerfactoField:
    made = NerfactoField(
        torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]),
        num_images=2,
        num_levels=4,
        max_res=256,
        log2_hashmap_size=10,
        spatial_distortion=ScaledContraction(1.0),
        implementation="torch",
    )
    use_smooth_gradient_encodings(made, 0.0, "paper")
    return made


def samples_along(origins, directions, pixel_area, distance: float) -> RaySamples:
    count = origins.shape[0]
    starts = torch.full((count, 1, 1), distance - 0.01)
    frustums = Frustums(
        origins=origins[:, None],
        directions=directions[:, None],
        starts=starts,
        ends=starts + 0.02,
        pixel_area=pixel_area[:, None],
    )
    return RaySamples(frustums=frustums, camera_indices=torch.zeros(count, 1, 1, dtype=torch.long))


def test_a_wide_and_a_zoom_in_ray_through_one_point_differ_by_their_footprints():
    cameras = zoom_cameras([1.0, 4.0], focal_guess=40.0, width=32, height=24, cx=16.5, cy=12.5)
    centre = torch.tensor([[12, 16], [12, 16]])  # the pixel whose centre is the principal point, in both images
    origins, directions, _, areas = cameras.rays(torch.tensor([0, 1]), centre)
    samples = samples_along(origins.detach(), directions.detach(), areas.detach(), distance=0.6)
    positions = samples.frustums.get_positions()
    assert torch.allclose(positions[0], positions[1], atol=1e-5)  # one point, seen by both
    nerf = field()
    hook = FootprintHook(nerf)
    seen = []
    hook.encoding.register_forward_pre_hook(lambda module, args: seen.append(module.footprint.clone()))
    nerf.forward(samples)  # as nerfacto calls it
    sigma = seen[0]
    assert sigma[0] / sigma[1] == pytest.approx(4.0, rel=1e-3)
    weights = footprint_weights(sigma, hook.encoding.scalings)
    assert torch.all(weights[1] >= weights[0]) and weights[1, -1] > weights[0, -1] + 0.05
    assert hook.encoding.footprint is None  # set for the density pass only


def test_footprint_follows_the_contraction():
    space = ScaledContraction(1.0)
    positions = torch.tensor([[0.0, 0.0, -0.5], [0.0, 0.0, -4.0]])
    distances, area = torch.tensor([[0.5], [4.0]]), torch.full((2, 1), 1e-4)
    sigma = sample_footprint(positions, distances, area, space)
    inside = (1e-4) ** 0.5 * 0.5 / 12**0.5 / 4.0
    assert sigma[0] == pytest.approx(inside, rel=1e-3)  # uncontracted: the pixel's width over √12, over 4
    # outside the unit cube the contraction shrinks space (radially 1/|x|², sideways (2 − 1/|x|)/|x|)
    shrink = ((1 / 16) * (1.75 / 4) ** 2) ** (1 / 3)
    assert sigma[1] == pytest.approx(8.0 * inside * shrink, rel=1e-2)


def test_gradients_reach_the_hash_table_through_the_weights(tmp_path):
    nerf = field()
    hook = FootprintHook(nerf)
    origins = torch.zeros(8, 3)
    directions = torch.nn.functional.normalize(torch.randn(8, 3), dim=-1)
    samples = samples_along(origins, directions, torch.full((8, 1), 1e-3), distance=0.5)
    outputs = nerf(samples)
    outputs[next(iter(outputs))].sum().backward()
    assert hook.encoding.hash_table.grad is not None and hook.encoding.hash_table.grad.abs().sum() > 0


@pytest.mark.slow
def test_a_run_with_footprints_trains_its_field_with_them(tmp_path):
    from dataclasses import replace

    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene
    from tests.helpers import build, tiny_trainer_config

    scene = tmp_path / "scene"
    make_scene(SceneMakerConfig(output=scene, width=32, height=24, zooms=(1.0, 4.0), n_wide=3, n_zoom=2, seed=0))
    config = tiny_trainer_config(scene, tmp_path / "runs", steps=4)
    model = replace(config.pipeline.model, footprint="downweight")
    trainer = build(replace(config, pipeline=replace(config.pipeline, model=model)))
    encoding = trainer.pipeline.mzen_model.footprint_hook.encoding
    seen = []
    encoding.register_forward_pre_hook(
        lambda module, args: seen.append(module.footprint is not None and not module.footprint.requires_grad)
    )
    trainer.train()
    assert seen and all(seen)  # every pass of the field's grid had footprints, carrying no camera gradient
    assert encoding.footprint is None
