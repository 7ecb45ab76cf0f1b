"""The console commands and ``ns-train mzen`` on the demo scene: solved-camera export, a stock method
training on the exported cameras, ``ns-eval``, ``mzen-render``."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch

from tests.helpers import run_stock_ns_train, tiny_scene, tiny_trainer_config, train


@pytest.mark.slow
def test_ns_train_mzen_without_data_uses_demo_scene_on_cpu(tmp_path):
    env = dict(os.environ, MZEN_CACHE_DIR=str(tmp_path / "cache"))
    args = [
        "ns-train",
        "mzen",
        "--max-num-iterations",
        "3",
        "--output-dir",
        str(tmp_path / "runs"),
        "--vis",
        "tensorboard",
        "--timestamp",
        "t",
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CPU preset" in result.stdout
    assert (tmp_path / "cache" / "demo-scene-v1" / "transforms.json").is_file()
    run = tmp_path / "runs" / "mzen-demo-scene" / "mzen" / "t"
    assert list((run / "nerfstudio_models").glob("*.ckpt"))
    assert (run / "priming.png").is_file()
    assert (run / "solved_cameras" / "transforms.json").is_file()
    assert "phase A" in result.stdout and "phase C" in result.stdout


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    scene = tiny_scene(root / "scene", seed=1)
    config = tiny_trainer_config(scene, root / "runs", steps=10, boundaries=(0.3, 0.6))
    config.save_config()
    return root, train(config)


@pytest.mark.slow
def test_export_cameras_round_trip(trained_run):
    root, trainer = trained_run
    output = root / "exported" / "transforms.json"
    config_path = trainer.base_dir / "config.yml"
    result = subprocess.run(
        ["mzen-export-cameras", "--load-config", str(config_path), "--output-path", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifest = json.loads(output.read_text())
    cameras = trainer.pipeline.mzen_model.cameras
    assert manifest["focal"] == pytest.approx(float(cameras.focal), rel=1e-6)
    frames = manifest["frames"]
    assert len(frames) == cameras.dials.numel() == 5
    learned = cameras.c2w().detach()
    zooms = cameras.zoom().detach()
    names = [f["file_path"] for f in frames]
    for i, frame in enumerate(frames):
        assert (output.parent / frame["file_path"]).is_file()
        assert torch.allclose(torch.tensor(frame["transform_matrix"])[:3], learned[i], atol=1e-6)
        assert frame["fl_x"] == pytest.approx(float(zooms[i] * cameras.focal), rel=1e-6)
        assert frame["zoom"] == pytest.approx(float(zooms[i]), rel=1e-6)
        assert frame["dial"] == float(cameras.dials[i])
        assert (frame["w"], frame["h"], frame["cx"], frame["cy"]) == (32, 24, 16.0, 12.0)
        if frame["dial"] == 1.0:
            assert "matched_wide" not in frame
        else:
            assert frame["matched_wide"] == names[int(cameras.match.root[i])]
            match = frame["mzen_match"]  # where, at what zoom and how surely it was matched
            assert match["matched_wide"] == frame["matched_wide"] and match["primed_from"] in names
            assert set(match) >= {"window_centre_px", "relative_zoom", "score", "runner_up_score", "flagged"}
            assert match["score"] == pytest.approx(float(cameras.match.score[i]), rel=1e-6)


@pytest.mark.slow
def test_stock_nerfacto_trains_on_exported_cameras(trained_run, tmp_path):
    root, trainer = trained_run
    output = root / "exported" / "transforms.json"
    if not output.is_file():
        subprocess.run(
            [
                "mzen-export-cameras",
                "--load-config",
                str(trainer.base_dir / "config.yml"),
                "--output-path",
                str(output),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    result = run_stock_ns_train(
        "nerfacto", output.parent, tmp_path / "runs", "nerfstudio-data", 64, 600, "--max-num-iterations", "2"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert list((tmp_path / "runs").rglob("*.ckpt"))


@pytest.mark.slow
def test_checkpoint_loads_with_safe_torch_load(trained_run):
    _, trainer = trained_run
    (checkpoint,) = trainer.checkpoint_dir.glob("*.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert "_model.cameras.log_focal" in state["pipeline"]


@pytest.mark.slow
def test_training_leaves_solved_cameras_and_ns_eval_loads_the_run(trained_run, tmp_path):
    _, trainer = trained_run
    solved = trainer.base_dir / "solved_cameras" / "transforms.json"
    manifest = json.loads(solved.read_text())
    assert len(manifest["frames"]) == 5
    assert all((solved.parent / f["file_path"]).is_file() for f in manifest["frames"])
    output = tmp_path / "eval.json"
    result = subprocess.run(
        ["ns-eval", "--load-config", str(trainer.base_dir / "config.yml"), "--output-path", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(output.read_text())["results"]
    from mzen_ns.patches import alexnet_weights_path

    assert "psnr" in results
    assert ("lpips" in results) == alexnet_weights_path().is_file()  # never a score from random weights


def test_find_view_by_path_name_or_stem():
    from mzen_ns.evaluation.registration import find_view

    names = ["images/1x/a.png", "images/4x/b.png", "images/16x/b.tif"]
    assert find_view(names, "images/4x/b.png") == 1
    assert find_view(names, "a.png") == 0 and find_view(names, "a") == 0
    assert find_view(names, "missing") is None
    with pytest.raises(ValueError, match="ambiguous"):
        find_view(names, "b")


@pytest.mark.slow
def test_render_magnification_is_a_zoom(trained_run):
    from mzen_ns.evaluation.evaluate import render_view
    from mzen_ns.evaluation.registration import camera_for_view

    _, trainer = trained_run
    pipeline = trainer.pipeline
    names = [str(p) for p in pipeline.datamanager.train_dataset.metadata["mzen_file_paths"]]
    model, data, config = pipeline.mzen_model, pipeline.datamanager, pipeline.config
    cameras, index, split = camera_for_view(model, data, config.registration, config.priming, names[-1])
    assert (cameras, index, split) == (pipeline.mzen_model.cameras, len(names) - 1, "train")
    magnified = render_view(pipeline.mzen_model, cameras, index, 4.0)
    assert magnified.shape == (24, 32, 3)
    with torch.no_grad():
        cameras.log_zoom[index] += torch.log(torch.tensor(4.0))
    try:
        zoomed = render_view(pipeline.mzen_model, cameras, index, 1.0)
    finally:
        with torch.no_grad():
            cameras.log_zoom[index] -= torch.log(torch.tensor(4.0))
    assert torch.allclose(magnified, zoomed, atol=1e-5)
    with pytest.raises(ValueError, match="no view 'nope'.*train_"):
        camera_for_view(model, data, config.registration, config.priming, "nope")


@pytest.mark.slow
def test_mzen_render_cli_registers_a_held_out_view(tmp_path):
    from PIL import Image

    from mzen_ns.synthetic.scene_maker import SceneMakerConfig, make_scene

    scene = tmp_path / "scene"
    make_scene(
        SceneMakerConfig(output=scene, width=32, height=24, zooms=(1.0, 4.0), n_wide=3, n_zoom=2, n_test=1, seed=2)
    )
    config = tiny_trainer_config(scene, tmp_path / "runs", steps=8, boundaries=(0.3, 0.6))
    config.pipeline.registration.steps = 3
    config.save_config()
    trainer = train(config)
    test_names = [str(p) for p in trainer.pipeline.datamanager.eval_dataset.metadata["mzen_file_paths"]]
    view = next(n for n in test_names if "4x" in n)
    output = tmp_path / "render.png"
    result = subprocess.run(
        [
            "mzen-render",
            "--load-config",
            str(trainer.base_dir / "config.yml"),
            "--view",
            view,
            "--magnification",
            "2",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "test view" in result.stdout
    assert np.asarray(Image.open(output)).shape == (24, 32, 3)


@pytest.mark.slow
def test_mzen_make_scene_onto_a_file_says_so(tmp_path):
    target = tmp_path / "taken"
    target.write_text("a file")
    result = subprocess.run(["mzen-make-scene", str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "exists and is not a folder" in result.stderr and "Traceback" not in result.stderr
    assert target.read_text() == "a file"


@pytest.mark.slow
def test_mzen_render_checks_its_arguments_before_loading_the_run(trained_run, monkeypatch):
    from mzen_ns.scripts import render

    _, trainer = trained_run
    config = trainer.base_dir / "config.yml"

    def no_loading(*args, **kwargs):
        raise AssertionError("the run was loaded before the arguments were checked")

    monkeypatch.setattr(render, "load_run", no_loading)
    with pytest.raises(ValueError, match="--magnification must be positive"):
        render.RenderView(load_config=config, view="train_000", magnification=0.0).main()
    with pytest.raises(ValueError, match=r"no view 'nope' in the run's scene; its views are: images/1x/"):
        render.RenderView(load_config=config, view="nope").main()


@pytest.mark.parametrize("command", ["mzen-render", "mzen-export-cameras"])
@pytest.mark.slow
def test_a_missing_config_is_one_line(command, tmp_path):
    args = [command, "--load-config", str(tmp_path / "nowhere.yml")]
    args += ["--view", "a"] if command == "mzen-render" else ["--output-path", str(tmp_path / "t.json")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nowhere.yml: config file not found" in result.stderr
    assert "Traceback" not in result.stderr
