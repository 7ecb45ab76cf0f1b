"""Every benchmark script loads and answers ``--help`` (a refactor of the package must not break
them silently), and benchmarks/README.md indexes each one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

_ANSWER_HELP = r"""
import contextlib, io, runpy, sys
from pathlib import Path
folder = Path(sys.argv[1])
sys.path.insert(0, str(folder))
for script in sorted(folder.glob("*.py")):
    sys.argv = [str(script), "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(script), run_name="__main__")
        code = "no exit"
    except SystemExit as stop:
        code = stop.code
    print(f"{script.name}: exit {code}; usage {'usage' in out.getvalue().lower()}")
"""


@pytest.mark.slow
def test_every_benchmark_loads_and_answers_help() -> None:
    scripts = sorted(path.name for path in BENCHMARKS.glob("*.py"))
    done = subprocess.run(
        [sys.executable, "-c", _ANSWER_HELP, str(BENCHMARKS)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [line for line in done.stdout.splitlines() if line.endswith("usage True") or ": exit" in line]
    assert answers == [f"{name}: exit 0; usage True" for name in scripts], done.stdout[-2000:] + done.stderr[-2000:]


def test_the_benchmarks_readme_indexes_every_script() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    missing = [path.name for path in BENCHMARKS.glob("*.py") if f"`{path.name}`" not in readme]
    assert not missing, f"benchmarks/README.md does not list {missing}"


def _private_uses(source: str) -> list:
    """``module._name`` reads and ``from mzen_ns… import _name`` of the package's private names."""
    import ast

    tree = ast.parse(source)
    modules = set()
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mzen_ns"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    uses.append(f"from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name for alias in node.names if alias.name.startswith("mzen_ns"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in modules:
                uses.append(f"{node.value.id}.{node.attr}")
    return uses


def test_the_private_use_check_sees_both_forms() -> None:
    source = "from mzen_ns.geometry import sfm\nfrom mzen_ns.priming.plan import _flagged\nsfm._match(1)\n"
    assert _private_uses(source) == ["from mzen_ns.priming.plan import _flagged", "sfm._match"]


def test_benchmarks_use_only_the_packages_public_names() -> None:
    found = {path.name: _private_uses(path.read_text()) for path in BENCHMARKS.glob("*.py")}
    assert not {name: uses for name, uses in found.items() if uses}


@pytest.mark.slow
def test_the_gpu_check_trains_scores_and_brings_every_package_the_gpu_machine_lacks(tmp_path: Path) -> None:
    import importlib.metadata
    import runpy

    check = runpy.run_path(str(BENCHMARKS / "gpu_check.py"))
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}  # every process lists the modules it imports
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "run", "--method", "mzen-cpu", "--steps", "12"]
    done = subprocess.run(
        [*command, "--skip-install", "--output", str(tmp_path / "check")], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()  # the runs' own output, then the report
    report = lines[max(i for i, line in enumerate(lines) if line.startswith("mzen-cpu, 12 steps: ")) :]
    assert report[0].endswith(" s/step") and float(report[0].split(": ")[1].split()[0]) > 0
    levels = [line.split(" | ")[0] for line in report if line.startswith("| ") and "×" in line]
    assert levels == ["| 1×", "| 4×", "| 16×"]  # the demo scene's levels, each scored
    timed = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in timed}
    owners = importlib.metadata.packages_distributions()
    used = {check["normalised"](dist) for module in imported for dist in owners.get(module, [])}
    brought = {check["normalised"](wheel.split("==")[0]) for wheel in check["WHEELS"]}
    missing = used - brought - check["ON_THE_MACHINE"] - {"mzen"}
    assert not missing, f"the GPU check brings no wheel of {sorted(missing)}: add them to WHEELS"


def test_level_pictures_put_the_truth_then_each_runs_render_in_one_row_per_level(tmp_path: Path) -> None:
    import runpy

    import numpy as np
    from PIL import Image

    script = runpy.run_path(str(BENCHMARKS / "level_pictures.py"))
    truth = {"1x": 10, "16x": 200}
    for run, shade in (("a", 50), ("b", 90)):
        (tmp_path / run).mkdir()
        for level, value in truth.items():
            pair = np.concatenate([np.full((4, 6, 3), value), np.full((4, 6, 3), shade + value // 10)], axis=1)
            Image.fromarray(pair.astype(np.uint8)).save(tmp_path / run / f"{level}_view.png")
    made = np.asarray(script["picture"]([("a", tmp_path / "a"), ("b", tmp_path / "b")], scale=2))[14:]
    assert made.shape == (2 * 4 * 2, 3 * 6 * 2, 3)  # rows 1× then 16×; columns truth, a, b
    assert made[1, 1, 0] == 10 and made[9, 1, 0] == 200  # the truth column (labels drawn top left: away from it)
    assert made[1, 13, 0] == 51 and made[9, 25, 0] == 110  # a's 1× render, b's 16× render


def test_shift_sensitivity_costs_more_psnr_the_further_and_the_finer_the_texture(tmp_path: Path) -> None:
    import runpy

    import numpy as np
    from PIL import Image

    script = runpy.run_path(str(BENCHMARKS / "shift_sensitivity.py"))
    xs = np.arange(48)[None, :, None]
    for level, period in (("1x", 4.0), ("4x", 16.0)):  # fine stripes at 1x, coarse ones at 4x
        truth = (127 + 100 * np.sin(2 * np.pi * xs / period)).repeat(32, axis=0).repeat(3, axis=2)
        pair = np.concatenate([truth, np.zeros_like(truth)], axis=1).astype(np.uint8)
        Image.fromarray(pair).save(tmp_path / f"{level}_view.png")
    views = script["truth_views"](tmp_path)
    assert sorted(views) == ["1x", "4x"] and views["1x"][0].shape == (32, 48, 3)
    fine, coarse = views["1x"][0], views["4x"][0]
    assert script["shifted_psnr"](fine, 0.0) > 100  # no shift, no error
    assert script["shifted_psnr"](fine, 0.1) > script["shifted_psnr"](fine, 0.33) > script["shifted_psnr"](fine, 0.5)
    assert script["shifted_psnr"](coarse, 0.33) > script["shifted_psnr"](fine, 0.33) + 6  # 4x the period: ~12 dB
    rows = script["table"](views, [0.1, 0.5])
    assert rows[0] == "| level | views | 0.1 px | 0.5 px |" and rows[2].startswith("| 1x | 1 |")


def test_held_out_variants_pairs_each_variant_with_the_first_on_the_same_scenes(tmp_path: Path) -> None:
    import json
    import runpy

    script = runpy.run_path(str(BENCHMARKS / "held_out_variants.py"))
    assert script["parse_variant"]("fine=--pipeline.model.max-res 4096") == (
        "fine",
        ["--pipeline.model.max-res", "4096"],
    )
    assert script["parse_variant"]("point=") == ("point", [])
    for bad in ("no-separator", "=--x 1", "a b=--x"):
        with pytest.raises(ValueError, match="NAME=ARGS"):
            script["parse_variant"](bad)
    psnr = {("s1", "base"): 20.0, ("s1", "new"): 21.0, ("s2", "base"): 30.0, ("s2", "new"): 30.0, ("s3", "new"): 9.0}
    for (scene, variant), value in psnr.items():
        results = {"psnr_1x": value, "psnr_4x": value + 1, "psnr_16x": value + 2, "psnr_16x_std": 0.4, "views_16x": 4}
        (tmp_path / f"{scene}_mzen_{variant}.eval.json").write_text(json.dumps({"results": results}))
    arguments = ["--scenes", "s1", "s2", "s3", "--variants", "base=", "new=--x 1"]
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "held_out_variants.py"),
            *arguments,
            "--output",
            str(tmp_path),
            "--report-only",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert "| mzen | new | s2 | 30.00 ± 0.00 | 31.00 ± 0.00 | 32.00 ± 0.20 | nan / nan | – |  |" in lines
    assert "| mzen | new | 3 | 20.00 ± 6.08 | 21.00 ± 6.08 | 22.00 ± 6.08 |" in lines
    # s3 has no reference run: the paired difference is over s1 and s2 only
    assert "| mzen | new | 2 | +0.50 ± 0.50 | +0.50 ± 0.50 | +0.50 ± 0.50 |" in lines
    # each method against the first, per variant; the levels are the ones the results hold (1×, 2×, 4×)
    real = {"mzen": {"r0": 20.0, "r1": 24.0}, "wide": {"r0": 21.0, "r1": 22.0}}
    found = {}
    for method, scores in real.items():
        for scene, value in scores.items():
            results = {"psnr_1x": value, "psnr_2x": value - 1, "psnr_4x": value - 2, "views_4x": 4, "psnr_4x_std": 2.0}
            found.setdefault((method, "default"), {})[scene] = (results, {})
    lines = script["report"](found, ["mzen", "wide"], ["default"], [Path("r0"), Path("r1")])
    assert lines[0].startswith("| method | variant | scene | PSNR 1× | PSNR 2× | PSNR 4× | own px 2× / 4× |")
    assert "| mzen | default | r1 | 24.00 ± 0.00 | 23.00 ± 0.00 | 22.00 ± 1.00 | nan / nan | – |  |" in lines
    assert "| wide | default | 2 | -0.50 ± 1.50 | -0.50 ± 1.50 | -0.50 ± 1.50 |" in lines  # +1 on r0, −2 on r1


def test_the_colmap_baseline_hands_nerfacto_the_registered_frames_with_their_own_cameras_and_the_split(
    tmp_path: Path,
) -> None:
    import json
    import runpy

    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    scene = tmp_path / "scene"
    make_scene(SceneMakerConfig(output=scene, width=64, height=48, zooms=(1.0, 4.0), n_wide=6, n_zoom=2, n_test=1))
    script = runpy.run_path(str(BENCHMARKS / "colmap_nerfacto.py"))
    frames = script["frames_and_splits"](scene)
    assert [(level, split) for _, level, split in frames].count((1.0, "test")) == 1
    data = script["colmap_cameras"](frames, tmp_path / "data")
    manifest = json.loads((data / "transforms.json").read_text())
    registered = {frame["file_path"] for frame in manifest["frames"]}
    assert len(registered) >= 3  # a model: an initial pair and a view registered to it
    assert all("fl_x" in frame and frame["w"] == 64 for frame in manifest["frames"])  # one camera per image
    train, test = set(manifest["train_filenames"]), set(manifest["test_filenames"])
    assert manifest["val_filenames"] == manifest["test_filenames"] and not train & test
    assert train | test == registered
    for name in registered:  # each file is in the split the scene gives its frame
        index = int(Path(name).stem)
        assert (name in test) == (frames[index][2] == "test")
        assert (data / name).resolve() == frames[index][0].resolve()
    counts = script["registered_per_level"](frames, data)
    assert set(counts) == {1.0, 4.0}
    assert [counts[1.0]["train"][-2:], counts[1.0]["test"][-2:], counts[4.0]["train"][-2:]] == ["/6", "/1", "/2"]
    assert sum(int(count.split("/")[0]) for level in counts.values() for count in level.values()) == len(registered)


def test_real_photo_scenes_hold_out_the_wides_and_zoom_ins_asked_for_and_use_each_frame_once() -> None:
    import runpy
    from collections import Counter

    script = runpy.run_path(str(BENCHMARKS / "real_photos.py"))
    names = [f"image.{i:04d}.png" for i in range(80)]
    config = script["RealPhotoScenes"](wides=9, dials=(2, 4), zoom_ins=4, held_out=4, held_out_wides=4)
    shots = script["_choose"](names, config, seed=3)
    assert len({name for name, _, _ in shots}) == len(shots)  # no frame twice
    counts = Counter((dial, split) for _, dial, split in shots)
    assert counts == {(1, "train"): 9, (1, "test"): 4, (2, "train"): 4, (2, "test"): 4, (4, "train"): 4, (4, "test"): 4}
    one = script["_choose"](names, script["RealPhotoScenes"](), seed=3)
    assert Counter(split for _, dial, split in one if dial == 1) == {"train": 9, "test": 1}
    with pytest.raises(SystemExit, match="held-out-wides"):
        script["_choose"](names[:28], config, seed=3)  # 29 frames asked of 28
