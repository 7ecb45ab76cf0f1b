"""Smooth-gradient straight-through estimator on the hash grid (Heo et al. 2023)."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.field_components.encodings import HashEncoding

from mzen_ns.encoding import SmoothGradientHashEncoding, smooth_step_weights, use_smooth_gradient_encodings


def plain_grid(seed: int = 0) -> HashEncoding:
    torch.manual_seed(seed)
    grid = HashEncoding(num_levels=4, min_res=4, max_res=32, log2_hashmap_size=10, implementation="torch")
    with torch.no_grad():
        grid.hash_table.uniform_(-1.0, 1.0)  # features of order 1 so gradients are visible
    return grid


@pytest.mark.parametrize("mode", ["paper", "smooth"])
def test_forward_is_bit_identical_to_the_plain_encoding(mode):
    plain = plain_grid()
    ste = SmoothGradientHashEncoding.from_encoding(plain, ste_lambda=1.0, ste_mode=mode)
    points = torch.rand(257, 3) * 2 - 1
    points[:8] = torch.tensor([0.25, 0.5, -0.75])  # exactly on cell faces of every level
    assert torch.equal(ste(points), plain(points))
    assert ste.hash_table is plain.hash_table


def test_weights_keep_their_value_and_get_the_cosine_gradient():
    w = torch.linspace(0.0, 1.0, 11, requires_grad=True)
    for mode, expected in (
        ("paper", 1 + 0.5 * torch.pi * torch.sin(torch.pi * w)),
        ("smooth", 0.5 * torch.pi * torch.sin(torch.pi * w)),
    ):
        out = smooth_step_weights(w, 1.0, mode)
        assert torch.equal(out, w)
        (grad,) = torch.autograd.grad(out.sum(), w)
        assert torch.allclose(grad, expected.detach(), atol=1e-6)


def position_gradient(grid: HashEncoding, x: float) -> torch.Tensor:
    point = torch.tensor([[x, 0.37, -0.21]], requires_grad=True)
    (grad,) = torch.autograd.grad(grid(point).sum(), point)
    return grad[0, 0]


def test_smooth_gradient_is_continuous_across_a_cell_boundary_where_the_plain_one_jumps():
    plain = plain_grid(1)
    grid = HashEncoding(num_levels=1, min_res=8, max_res=8, log2_hashmap_size=10, implementation="torch")
    grid.hash_table = plain.hash_table
    smooth = SmoothGradientHashEncoding.from_encoding(grid, ste_lambda=1.0, ste_mode="smooth")
    paper = SmoothGradientHashEncoding.from_encoding(grid, ste_lambda=1.0, ste_mode="paper")
    boundary, eps = 3.0 / 8.0, 1e-4  # a cell face of the resolution-8 grid

    def jump(g):
        return abs(float(position_gradient(g, boundary + eps) - position_gradient(g, boundary - eps)))

    scale = abs(float(position_gradient(grid, boundary - 0.5 / 8)))  # a mid-cell gradient, for scale
    assert jump(grid) > 0.1 * scale  # the plain gradient jumps at the face
    assert jump(smooth) < 1e-2 * jump(grid)  # the smooth one does not
    assert jump(paper) == pytest.approx(jump(grid), rel=0.05)  # Eq. 13 keeps the plain part's jump …
    assert abs(float(position_gradient(paper, boundary - 0.5 / 8))) > scale  # … and adds the smooth part


def test_swap_replaces_every_torch_encoding_and_shares_tables():
    from nerfstudio.fields.density_fields import HashMLPDensityField

    field = HashMLPDensityField(
        torch.tensor([[-1.0] * 3, [1.0] * 3]), num_levels=4, max_res=32, log2_hashmap_size=10, implementation="torch"
    )
    table = field.encoding.hash_table
    points = torch.rand(1, 64, 3)
    from nerfstudio.cameras.rays import Frustums, RaySamples

    def density() -> torch.Tensor:
        frustums = Frustums(
            origins=points,
            directions=torch.zeros_like(points),
            starts=torch.zeros_like(points[..., :1]),
            ends=torch.zeros_like(points[..., :1]),
            pixel_area=torch.ones_like(points[..., :1]),
        )
        frustums.get_positions = lambda: points  # type: ignore[method-assign]
        return field.get_density(RaySamples(frustums=frustums))[0]

    before = density()
    assert use_smooth_gradient_encodings(field, 1.0, "paper") == 1
    assert isinstance(field.encoding, SmoothGradientHashEncoding) and field.mlp_base[0] is field.encoding
    assert field.encoding.hash_table is table
    assert torch.equal(density(), before)


def test_level_rates_follow_equation_15():
    from mzen_ns.encoding import level_rates

    assert torch.equal(level_rates(-0.5, 3), torch.zeros(3))
    assert torch.allclose(level_rates(0.5, 3), torch.tensor([0.5, 0.0, 0.0]))
    assert torch.allclose(level_rates(1.25, 3), torch.tensor([1.0, (1 - 0.7071068) / 2, 0.0]), atol=1e-6)
    assert torch.equal(level_rates(3.0, 3), torch.ones(3))
    rates = torch.stack([level_rates(a, 4) for a in torch.linspace(0, 4, 41).tolist()])
    assert bool((rates.diff(dim=0) >= 0).all())  # every level's rate only grows


def test_curriculum_scales_each_levels_update():
    from mzen_ns.encoding import LevelCurriculum, LevelCurriculumConfig

    grid = plain_grid()
    optimizer = torch.optim.Adam(grid.parameters(), lr=1e-2)
    curriculum = LevelCurriculum(LevelCurriculumConfig(enabled=True, interval=(0.0, 1.0)), [grid], lambda step: (0, 8))
    curriculum.attach(optimizer)
    points = torch.rand(512, 3) * 2 - 1
    for step, expected_moving in ((0, 0), (3, 2), (8, 4)):  # alpha = L * step / 8
        curriculum.step = step
        before = grid.hash_table.detach().clone().view(4, -1, 2)
        optimizer.zero_grad()
        grid(points).square().sum().backward()
        optimizer.step()
        moved = (grid.hash_table.detach().view(4, -1, 2) - before).abs().amax(dim=(1, 2)) > 0
        assert int(moved.sum()) == expected_moving and bool(moved[:expected_moving].all())
    assert LevelCurriculum(LevelCurriculumConfig(), [grid], lambda step: (0, 8)).progress(3) is None  # off by default
    curriculum.phase_window = lambda step: None  # phase B (no poses learned): updates left alone
    before = grid.hash_table.detach().clone()
    optimizer.zero_grad()
    grid(points).square().sum().backward()
    optimizer.step()
    assert bool(((grid.hash_table.detach() - before).view(4, -1, 2).abs().amax(dim=(1, 2)) > 0).all())


@pytest.mark.slow
def test_trainer_runs_the_curriculum_in_phases_a_and_c_only(tmp_path):
    """Each pose-learning phase restarts the curriculum on its own window; phase B leaves it off; the
    trainer drives it on the tables of the field and the proposal networks."""
    from dataclasses import replace

    from mzen_ns.encoding import LevelCurriculumConfig
    from tests.helpers import build, tiny_scene, tiny_trainer_config

    config = tiny_trainer_config(tiny_scene(tmp_path / "scene"), tmp_path / "out", steps=20)
    model = replace(config.pipeline.model, hash_curriculum=LevelCurriculumConfig(enabled=True))
    config = replace(config, pipeline=replace(config.pipeline, model=model))
    trainer = build(config)
    schedule = trainer.pipeline.phase_schedule
    a, b, c = (schedule.start_of(p) for p in "ABC")
    assert 0 == a < b < c < schedule.end
    assert trainer._pose_phase_window(a) == (a, b) and trainer._pose_phase_window(c) == (c, schedule.end)
    assert trainer._pose_phase_window(b) is None and trainer.curriculum.progress(b) is None
    t_s, t_e = trainer.config.pipeline.model.hash_curriculum.interval
    assert trainer.curriculum.progress(c + round(t_e * (schedule.end - c))) == pytest.approx(1.0, abs=0.2)
    encodings = {id(m) for m in trainer.pipeline.mzen_model.modules() if isinstance(m, HashEncoding)}
    assert {id(e) for e in trainer.curriculum.encodings} == encodings and len(encodings) >= 2
    tables = [e.hash_table.detach().clone() for e in trainer.curriculum.encodings]
    trainer.curriculum.phase_window = lambda step: (0, 10**6)  # step 0 before t_s: no level may move
    poses = trainer.pipeline.mzen_model.cameras.wide_pose.detach().clone()
    trainer.pipeline.phase_schedule = replace(schedule, end=1)  # train step 0 only
    trainer.train()
    assert trainer.pipeline.datamanager.train_count == 1
    assert not torch.equal(trainer.pipeline.mzen_model.cameras.wide_pose, poses)  # a step was taken …
    assert all(
        torch.equal(e.hash_table, t) for e, t in zip(trainer.curriculum.encodings, tables)
    )  # … but no table moved
