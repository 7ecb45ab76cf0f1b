"""``mzen-bench``: every configuration trained and evaluated, a report and plots, resumable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mzen_ns.scripts.bench import BenchConfig, run_bench
from tests.helpers import tiny_scene


@pytest.mark.slow
def test_bench_reports_every_run_and_does_not_redo_finished_ones(tmp_path):
    scene = tiny_scene(tmp_path / "tiny")
    config = BenchConfig(
        output=tmp_path / "bench",
        scenes=(scene,),
        seeds=(),
        configurations=("phase-a", "oracle"),
        preset="smoke",
        steps=6,
        registration_steps=3,
    )
    records = run_bench(config)
    assert [r.configuration for r in records] == ["phase-a", "oracle", "sfm-anchor"]
    report = (config.output / "report.md").read_text()
    for configuration in ("phase-a", "oracle"):
        for level in ("1x", "4x"):
            assert f"| tiny | {configuration} | {level} |" in report
    assert (config.output / "psnr_per_zoom.png").stat().st_size > 0 and (config.output / "pose_error.png").is_file()
    for level in ("1x", "4x"):  # a picture per level from the runs' held-out renders, linked in the report
        assert (config.output / f"detail_{level}.png").stat().st_size > 0 and f"(detail_{level}.png)" in report
    assert any((config.output / "runs" / "tiny" / "mzen-oracle" / "bench" / "renders").glob("4x_*.png"))
    oracle = next(r for r in records if r.configuration == "oracle")
    assert oracle.results["rot_err_deg"] < 0.1 and oracle.summary["steps"] == 6  # fixed true cameras
    assert next(r for r in records if r.configuration == "phase-a").summary["steps"] == 3  # 3/5 of the budget

    runs = config.output / "runs" / "tiny"
    train_log: Path = runs / "mzen-oracle" / "bench" / "train.log"
    kept_eval = runs / "mzen-phase-a" / "bench" / "eval.json"
    times = train_log.stat().st_mtime_ns, kept_eval.stat().st_mtime_ns
    (runs / "mzen-oracle" / "bench" / "eval.json").unlink()  # interrupted after training
    anchor_eval = runs / "sfm-anchor" / "bench" / "eval.json"
    anchor_time = anchor_eval.stat().st_mtime_ns
    again = run_bench(config)
    assert len(again) == 3 and (runs / "mzen-oracle" / "bench" / "eval.json").is_file()
    assert anchor_eval.stat().st_mtime_ns == anchor_time  # the anchor is computed once
    assert (train_log.stat().st_mtime_ns, kept_eval.stat().st_mtime_ns) == times  # nothing redone but the eval

    (runs / "mzen-oracle" / "bench" / "eval.json").unlink()
    partial = run_bench(replace(config, report_only=True))  # reports what is finished, runs nothing
    assert [r.configuration for r in partial] == ["phase-a", "sfm-anchor"]
    assert not (runs / "mzen-oracle" / "bench" / "eval.json").exists()
    assert "| tiny | oracle |" not in (config.output / "report.md").read_text()


def test_generated_scenes_hold_out_the_requested_views_per_level(tmp_path):
    import json
    from collections import Counter

    from mzen_ns.scripts.bench import scene_list

    [(name, folder)] = scene_list(BenchConfig(output=tmp_path, seeds=(4,), test_views=2))
    assert name == "default-seed4-test2"
    frames = json.loads((folder / "transforms.json").read_text())["frames"]
    held_out = Counter(f["zoom"] for f in frames if f.get("split") == "test")
    assert len(held_out) == 3 and set(held_out.values()) == {2}  # two per level, three levels
    assert scene_list(BenchConfig(output=tmp_path, seeds=(4,), test_views=2)) == [(name, folder)]  # made once


def test_the_sfm_anchor_scores_colmaps_wide_cameras_against_the_truth(tmp_path):
    from mzen_ns.scripts.bench import sfm_anchor
    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    scene = tmp_path / "parallax"
    make_scene(SceneMakerConfig(output=scene, zooms=(1.0, 4.0), n_wide=9, n_zoom=2, n_test=0, seed=3))
    results, summary = sfm_anchor(scene)
    assert summary["initialiser"]["start"] == "sfm" and summary["train_seconds"] > 0
    assert results["wide_pair_rot_err_deg"] < 0.5 and results["focal_err_rel"] < 0.03
    assert results["rot_err_deg"] < 0.5 and "zoom_err_rel" not in results  # zoom-ins stay unregistered


def _record(scene, configuration, **results):
    from mzen_ns.scripts.bench import RunRecord

    return RunRecord(scene, configuration, dict(results), {}, 0.0, [4.0])


def test_level_spread_pools_every_scenes_held_out_views():
    import math

    import numpy as np

    from mzen_ns.scripts.bench import level_spread

    views = {"a": [20.0, 22.0, 27.0], "b": [30.0, 31.0]}  # per-view PSNR at 4x on two scenes
    records = [
        _record(
            scene,
            "mzen",
            psnr_4x=float(np.mean(v)),
            psnr_4x_std=float(np.std(v, ddof=1)),
            psnr_4x_worst=min(v),
            views_4x=float(len(v)),
        )
        for scene, v in views.items()
    ]
    pooled = np.array(views["a"] + views["b"])
    mean, se, worst, count = level_spread(records, "psnr", 4.0)
    assert mean == pytest.approx(pooled.mean()) and se == pytest.approx(pooled.std(ddof=1) / math.sqrt(5))
    assert worst == 20.0 and count == 5
    assert level_spread(records, "psnr", 16.0) is None


def test_footprint_runs_are_named_ordered_and_compared_with_the_default_footprints_run_per_scene():
    from mzen_ns.model import MZENModelConfig
    from mzen_ns.scripts.bench import _configurations, _footprint_section, run_label

    assert MZENModelConfig().footprint == "downweight"
    assert run_label("oracle", "downweight") == "oracle" and run_label("oracle", "point") == "oracle+point"
    records = [
        _record("a", "oracle+point", psnr_4x=21.0),
        _record("a", "oracle", psnr_4x=20.0),
        _record("b", "oracle+point", psnr_4x=22.0),
        _record("b", "oracle", psnr_4x=19.0),
        _record("a", "mzen", psnr_4x=18.0),
    ]
    assert _configurations(records) == ["mzen", "oracle", "oracle+point"]
    lines = _footprint_section(records)
    assert "## Footprint effect: PSNR of the run minus the downweight run on the same scene" in lines
    [row] = [line for line in lines if line.startswith("| oracle+point")]
    assert row == "| oracle+point | 4x | 2 | 2.00 ± 1.00 | 1.00 |"  # deltas 1 and 3 dB


def test_the_report_shows_how_zoom_ins_were_placed_and_their_error_in_their_own_pixels():
    from mzen_ns.scripts.bench import _placement_section

    counts = dict(
        zoom_ins_placed_2d3d=2.0, zoom_ins_placed_search=5.0, zoom_ins_flagged=1.0, zoom_ins_wrong_unflagged=0.0
    )
    pixels = dict(reproj_px_4x=0.8, reproj_px_4x_p90=1.9, test_reproj_px_4x=1.2, test_reproj_px_4x_p90=2.5)
    records = [_record("a", "mzen", psnr_4x=20.0, **counts, **pixels), _record("b", "oracle", psnr_4x=21.0)]
    records[0].summary["priming_seconds"] = 1.84
    rows = [line for line in _placement_section(records) if line.startswith("| a ")]
    assert rows == ["| a | mzen | 2 | 5 | 1 | 0 | 1.8 | 4x | 0.80 (1.90) | 1.20 (2.50) |"]
    assert not any(line.startswith("| b ") for line in _placement_section(records))  # no zoom-ins placed
