"""Phase schedule, phase-aligned learning rates, and one decision shared by every process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mzen_ns.distributed import decided_once, share_decision
from mzen_ns.phases import (
    POLICY,
    PhaseDecaySchedulerConfig,
    PhaseSchedule,
    PhaseScheduleConfig,
    allowed_images,
    check_sanity,
    held_zoom_ins,
)


def test_default_boundaries_follow_equal_budget():
    schedule = PhaseSchedule.resolve(PhaseScheduleConfig(), total_steps=1700, n_wide=9, n_train=17)
    assert schedule.b_start == 900  # 9/17 of the steps: a wide image gets the passes of a wide-only run
    assert schedule.c_start == 900 + 200  # a quarter of the rest registers the zoom-ins
    assert [schedule.phase_at(s) for s in (0, 899, 900, 1099, 1100, 1699)] == ["A", "A", "B", "B", "C", "C"]


def test_configured_boundaries_and_wide_only_scene():
    schedule = PhaseSchedule.resolve(PhaseScheduleConfig(boundaries=(0.5, 0.75)), 100, 3, 5)
    assert (schedule.b_start, schedule.c_start) == (50, 75)
    assert PhaseSchedule.resolve(PhaseScheduleConfig(), 100, 4, 4).phase_at(99) == "A"
    with pytest.raises(ValueError, match="phase boundaries"):
        PhaseSchedule.resolve(PhaseScheduleConfig(boundaries=(0.8, 0.5)), 100, 3, 5)


def test_without_registration_gives_phase_b_to_phase_c_unless_b_is_last():
    schedule = PhaseSchedule.resolve(PhaseScheduleConfig(boundaries=(0.5, 0.75)), 100, 3, 5)
    skipped = schedule.without_registration()
    assert (skipped.b_start, skipped.c_start, skipped.end, skipped.total) == (50, 50, 100, 100)
    assert [skipped.phase_at(s) for s in (49, 50, 74, 99)] == ["A", "C", "C", "C"]
    last_b = PhaseSchedule.resolve(PhaseScheduleConfig(boundaries=(0.5, 0.75), stop_after="B"), 100, 3, 5)
    assert last_b.without_registration() == last_b


def test_groups_and_images_per_phase():
    assert POLICY["A"].groups == {"fields", "proposal_networks", "wide_poses", "focal"}
    assert POLICY["B"].groups == {"zoom_poses", "zooms"}
    assert POLICY["C"].groups == {"fields", "proposal_networks", "wide_poses", "focal", "zoom_poses", "zooms"}
    is_wide = torch.tensor([True, True, False])
    assert allowed_images("A", is_wide).tolist() == [True, True, False]
    assert allowed_images("B", is_wide).tolist() == [False, False, True]
    assert allowed_images("C", is_wide).tolist() == [True, True, True]
    schedule = PhaseSchedule.resolve(PhaseScheduleConfig(boundaries=(0.5, 0.75)), 100, 3, 5)
    assert schedule.group_start("fields") == 0 and schedule.group_start("zooms") == 50


def test_phases_that_train_the_field_leave_out_unverified_zoom_ins():
    is_wide = torch.tensor([True, True, False, False])
    flagged = torch.tensor([False, False, True, False])
    assert allowed_images("A", is_wide, flagged).tolist() == [True, True, False, False]
    assert allowed_images("B", is_wide, flagged).tolist() == [False, False, True, True]  # registered, field frozen
    assert allowed_images("C", is_wide, flagged).tolist() == [True, True, False, True]
    assert PhaseScheduleConfig().unverified(flagged) is flagged
    assert PhaseScheduleConfig(train_field_on_flagged=True).unverified(flagged) is None


def test_sanity_check_names_unknown_and_unconfigured_groups():
    groups = ["fields", "proposal_networks", "wide_poses", "zoom_poses", "focal", "zooms"]
    check_sanity(groups, groups)
    with pytest.raises(ValueError, match="'appearance' is not in mzen's phase policy"):
        check_sanity(groups + ["appearance"], groups + ["appearance"])
    with pytest.raises(ValueError, match="'zooms' has no optimizer"):
        check_sanity(groups, groups[:-1])


def test_learning_rate_schedule_starts_with_its_phase():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=1e-2)
    config = PhaseDecaySchedulerConfig(lr_final=1e-4, warmup_steps=10, start_step=100, max_steps=300)
    scheduler = config.setup().get_scheduler(optimizer, lr_init=1e-2)
    rates = []
    for _ in range(300):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[99] == 0.0
    assert rates[100] == pytest.approx(1e-3, rel=1e-3)  # first warm-up step
    assert rates[109] == pytest.approx(1e-2 * (1e-2 ** (9 / 200)), rel=1e-3)
    assert rates[299] == pytest.approx(1e-2 * (1e-2 ** (199 / 200)), rel=1e-3)


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    local = torch.tensor([3, 1, 4]) if rank == 0 else torch.tensor([2, 7, 1])  # ranks disagree locally
    results[rank] = share_decision(local, "cpu").tolist()
    results[f"solved {rank}"] = decided_once(lambda: {"start": f"solved on rank {rank}"})
    dist.destroy_process_group()


def test_every_process_adopts_rank_zeros_match():
    port = 29500 + os.getpid() % 1000
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(port, results), nprocs=2, join=True)
        assert results[0] == results[1] == [3, 1, 4]
        assert results["solved 0"] == results["solved 1"] == {"start": "solved on rank 0"}


def test_single_process_decision_unchanged():
    assert share_decision(torch.tensor([5, 6]), "cpu").tolist() == [5, 6]


def test_held_zoom_ins_follow_the_hold_and_the_refined_searches():
    primed = torch.tensor([False, False, True, True, True])  # two wide views, three primed zoom-ins
    geometric = torch.tensor([False, False, True, False, False])  # the first placed by 2D–3D
    for hold in ("none", "phase-a"):  # cameras that move take their zoom-ins along
        assert not held_zoom_ins(hold, False, primed, geometric).any()
    assert held_zoom_ins("always", False, primed, geometric).tolist() == [False, False, True, True, True]
    refined = held_zoom_ins("always", True, primed, geometric)
    assert refined.tolist() == geometric.tolist()
    held = held_zoom_ins("always", False, primed, geometric)
    refined[2], held[2] = False, False
    assert bool(geometric[2]) and bool(primed[2])  # answers of their own, not the record's tensors
