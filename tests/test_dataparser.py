"""FF-MZN dataparser: layouts, normalisation, image types, splits, metadata, and every error."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from mzen_dataparsers.errors import SceneFormatError
from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig
from mzen_dataparsers.manifest import DEFAULT_FOV_X_DEG
from tests.helpers import H, W, random_rgb, write_png


def parse(root: Path, split: str = "train", **options):
    return FFMZNDataParserConfig(data=root, **options).setup().get_dataparser_outputs(split=split)


def read_back(outputs, index: int) -> np.ndarray:
    """What nerfstudio's InputDataset will read for image ``index`` (float in [0, 1])."""
    from nerfstudio.data.datasets.base_dataset import InputDataset

    return InputDataset(outputs).get_image_float32(index).numpy()


# ----------------------------------------------------------------------------- valid scenes


def test_manifest_scene_cameras_and_metadata(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 1, 4, 4, 16], top={"fl_x": 20.0})
    out = parse(root, test_every=0)
    assert len(out.image_filenames) == 6
    dial = out.metadata["mzen_dial"]
    assert torch.equal(dial, torch.tensor([1.0, 1.0, 1.0, 4.0, 4.0, 16.0]))
    assert torch.allclose(out.cameras.fx[:, 0], 20.0 * dial)
    assert torch.allclose(out.cameras.fy[:, 0], 20.0 * dial)
    assert torch.allclose(out.cameras.cx, torch.full((6, 1), W / 2.0))
    assert torch.allclose(out.cameras.cy, torch.full((6, 1), H / 2.0))
    assert torch.equal(out.cameras.camera_to_worlds, torch.eye(4)[:3].expand(6, 3, 4))
    assert out.metadata["mzen_level"].tolist() == [0, 0, 0, 1, 1, 2]
    assert out.metadata["mzen_levels"] == [1.0, 4.0, 16.0]
    assert out.metadata["mzen_file_paths"][5] == "images/f05.png"
    assert out.cameras.metadata is None  # nothing per camera reaches the rays


def test_zoom_scales_field_of_view_exactly(make_manifest_scene):
    out = parse(make_manifest_scene(zooms=[1, 1, 4]), test_every=0)
    fov = [2 * math.atan(W / 2 / float(out.cameras.fx[i])) for i in range(3)]
    assert math.tan(fov[0] / 2) / math.tan(fov[2] / 2) == pytest.approx(4.0)


def test_default_focal_guess_and_fov_guess(make_manifest_scene):
    out = parse(make_manifest_scene(zooms=[1, 1]), test_every=0)
    assert float(out.cameras.fx[0]) == pytest.approx(W / 2 / math.tan(math.radians(DEFAULT_FOV_X_DEG) / 2))
    assert float(out.cameras.fx[0]) == pytest.approx(W)
    out = parse(make_manifest_scene(zooms=[1, 1], top={"fov_x_deg": 90.0}), test_every=0)
    assert float(out.cameras.fx[0]) == pytest.approx(W / 2)


def test_sem_readings_are_normalised_to_widest(make_manifest_scene):
    out = parse(make_manifest_scene(zooms=[500, 500.0, 2000, 8000]), test_every=0)
    assert out.metadata["mzen_dial"].tolist() == [1.0, 1.0, 4.0, 16.0]


def test_ground_truth_kept_for_evaluation_only(make_manifest_scene):
    pose = np.eye(4)
    pose[:3, 3] = [0.1, 0.2, 0.3]
    frames = [{"gt_transform_matrix": pose.tolist(), "gt_zoom": 500}, {"gt_zoom": 500}, {"gt_zoom": 2060}]
    out = parse(make_manifest_scene(zooms=[500, 500, 2000], frames=frames, top={"gt_focal": 33.0}), test_every=0)
    truth = out.metadata["mzen_ground_truth"]
    assert torch.allclose(truth["c2w"][0], torch.tensor(pose, dtype=torch.float32))
    assert torch.isnan(truth["c2w"][1]).all()
    assert truth["zoom"].tolist() == pytest.approx([1.0, 1.0, 4.12])
    assert truth["focal"] == 33.0
    assert torch.equal(out.cameras.camera_to_worlds[0], torch.eye(4)[:3])  # gt never becomes a pose
    assert truth["points"] == [None, None, None]


def test_ground_truth_surface_points_kept_per_frame(make_manifest_scene):
    frames = [{"gt_points": [[0.0, 0.1, -1.0], [0.2, 0.0, -0.9]]}, {}]
    truth = parse(make_manifest_scene(zooms=[1, 1], frames=frames), test_every=0).metadata["mzen_ground_truth"]
    assert truth["points"][0].tolist() == [[0.0, 0.1, -1.0], [0.2, 0.0, -0.9]]
    assert truth["points"][1] is None


@pytest.mark.parametrize(
    "points", [[[0.0, 1.0]], [[0.0, "a", 1.0]], [[0.0, float("nan"), 1.0]], {"x": 1}, [1.0, 2.0, 3.0]]
)
def test_error_bad_surface_points(make_manifest_scene, points):
    root = make_manifest_scene(zooms=[1, 1], frames=[{}, {"gt_points": points}])
    with pytest.raises(SceneFormatError, match=r"frame 1 .*'gt_points'"):
        parse(root)


def test_pose_prior_used_only_when_asked(make_manifest_scene):
    poses = []
    for x in (0.0, 1.0, 2.0):
        pose = np.eye(4)
        pose[0, 3] = x
        poses.append({"transform_matrix": pose.tolist()})
    root = make_manifest_scene(zooms=[1, 1, 1], frames=poses)
    assert torch.equal(parse(root, test_every=0).cameras.camera_to_worlds[:, :, 3], torch.zeros(3, 3))
    prior = parse(root, test_every=0, use_pose_prior=True).cameras.camera_to_worlds[:, 0, 3]
    assert prior.tolist() == pytest.approx([-1.0, 0.0, 1.0])  # centred, largest distance 1
    raw = parse(root, test_every=0, use_pose_prior=True, pose_prior_normalisation="none")
    assert raw.cameras.camera_to_worlds[:, 0, 3].tolist() == pytest.approx([0.0, 1.0, 2.0])


def test_identity_pose_priors_do_not_divide_by_zero(make_manifest_scene):
    frames = [{"transform_matrix": np.eye(4).tolist()} for _ in range(3)]
    out = parse(make_manifest_scene(zooms=[1, 1, 4], frames=frames), test_every=0, use_pose_prior=True)
    assert torch.isfinite(out.cameras.camera_to_worlds).all()
    assert out.dataparser_scale == 1.0


def test_pose_prior_missing_on_a_frame_is_an_error(make_manifest_scene):
    frames = [{"transform_matrix": np.eye(4).tolist()}, {}]
    root = make_manifest_scene(zooms=[1, 1], frames=frames)
    with pytest.raises(SceneFormatError, match=r"frame 1 \(images/f01.png\).*transform_matrix"):
        parse(root, use_pose_prior=True)


def test_folder_layout(make_folder_scene):
    root = make_folder_scene({"1x": 3, "4x": 2, "16x": 1})
    out = parse(root, test_every=0)
    assert sorted(out.metadata["mzen_dial"].tolist()) == [1, 1, 1, 4, 4, 16]
    assert {"1x/img00.png", "4x/img01.png", "16x/img00.png"} <= set(out.metadata["mzen_file_paths"])
    (root / "1x" / ".DS_Store").write_text("finder junk")  # hidden files are not frames
    assert len(parse(root, test_every=0).image_filenames) == 6


def test_folder_layout_fractional_folder_names(make_folder_scene):
    out = parse(make_folder_scene({"2.5x": 2, "10x": 1}), test_every=0)
    assert sorted(out.metadata["mzen_dial"].tolist()) == [1, 1, 4]


# ----------------------------------------------------------------------------- image types


def test_grayscale_8bit_replicated_to_rgb(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1])
    gray = np.arange(W * H, dtype=np.uint8).reshape(H, W)
    write_png(root / "images/f00.png", gray)
    out = parse(root, test_every=0)
    image = read_back(out, 0)
    assert image.shape == (H, W, 3)
    assert np.allclose(image[..., 0], gray / 255.0) and np.allclose(image[..., 2], gray / 255.0)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grayscale_scaled_to_unit_range(make_manifest_scene, suffix):
    values = np.linspace(0, 65535, W * H).astype(np.uint16).reshape(H, W)
    root = make_manifest_scene(zooms=[1, 1], frames=[{"file_path": f"images/g{suffix}"}, {}])
    path = root / f"images/g{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, values)
    else:
        Image.fromarray(values).save(path)
    out = parse(root, test_every=0)
    image = read_back(out, 0)
    assert image.shape == (H, W, 3)
    assert np.abs(image[..., 1] - values / 65535.0).max() <= 0.5 / 255 + 1e-6
    assert out.metadata["mzen_source_filenames"][0] == path


def test_16bit_rgb_png(make_manifest_scene):
    import cv2

    rgb = np.zeros((H, W, 3), np.uint16)
    rgb[..., 0] = 65535  # pure red, stored by OpenCV as BGR
    root = make_manifest_scene(zooms=[1, 1])
    cv2.imwrite(str(root / "images/f00.png"), rgb[..., ::-1])
    image = read_back(parse(root, test_every=0), 0)
    assert np.allclose(image[0, 0], [1.0, 0.0, 0.0])


def test_float_tiff_in_unit_range(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1], frames=[{"file_path": "images/f.tif"}, {}])
    tifffile.imwrite(root / "images/f.tif", np.full((H, W), 0.25, np.float32))
    assert np.allclose(read_back(parse(root, test_every=0), 0), 0.25, atol=1 / 255)


def test_float32_detector_units_mapped_by_float_range(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1], frames=[{"file_path": "images/f.tif"}, {"file_path": "images/g.tif"}])
    tifffile.imwrite(root / "images/f.tif", np.full((H, W), 1500.0, np.float32))  # raw counts
    tifffile.imwrite(root / "images/g.tif", np.full((H, W), 3500.0, np.float32))
    with pytest.raises(SceneFormatError, match=r"f\.tif.*\[1500, 1500\].*float-range"):
        parse(root, test_every=0)
    outputs = parse(root, test_every=0, float_range=(1000.0, 5000.0))  # one mapping for every frame
    assert np.allclose(read_back(outputs, 0), 0.125, atol=1 / 255)
    assert np.allclose(read_back(outputs, 1), 0.625, atol=1 / 255)
    with pytest.raises(SceneFormatError, match="float_range"):
        parse(root, float_range=(5.0, 5.0))


@pytest.mark.parametrize("alpha, expected", [("white", 0.5 + 0.5), ("black", 0.5), ("drop", 1.0)])
def test_rgba_alpha_handling(make_manifest_scene, alpha, expected):
    root = make_manifest_scene(zooms=[1, 1])
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = 128
    write_png(root / "images/f00.png", rgba)
    image = read_back(parse(root, test_every=0, alpha=alpha), 0)
    assert image.shape == (H, W, 3)
    white_over = 1.0 * 128 / 255 + 1.0 * (1 - 128 / 255)
    want = {"white": white_over, "black": 128 / 255, "drop": 1.0}[alpha]
    assert np.allclose(image, want, atol=1 / 255), expected


def test_tiff_magnification_from_sem_metadata(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 1], frames=[{}, {}, {"file_path": "images/sem.tif"}])
    for index, (name, hfw) in enumerate([("images/f00.tif", 4e-4), ("images/f01.tif", 4e-4), ("images/sem.tif", 1e-4)]):
        ini = f"[User]\nDate=01/01/2026\n[Scan]\nHorFieldsize={hfw}\n"
        tifffile.imwrite(root / name, random_rgb(index)[..., 0], extratags=[(34682, "s", 0, ini, True)])
    manifest = json.loads((root / "transforms.json").read_text())
    manifest["frames"] = [{"file_path": n} for n in ("images/f00.tif", "images/f01.tif", "images/sem.tif")]
    (root / "transforms.json").write_text(json.dumps(manifest))
    assert parse(root, test_every=0).metadata["mzen_dial"].tolist() == pytest.approx([1.0, 1.0, 4.0])


def test_tiff_with_malformed_magnification_names_file(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1])
    tifffile.imwrite(
        root / "images/bad.tif", random_rgb(0)[..., 0], extratags=[(34682, "s", 0, "[Scan]\nHorFieldsize=-3\n", True)]
    )
    manifest = json.loads((root / "transforms.json").read_text())
    manifest["frames"][0] = {"file_path": "images/bad.tif"}
    (root / "transforms.json").write_text(json.dumps(manifest))
    with pytest.raises(SceneFormatError, match=r"bad\.tif.*HorFieldsize"):
        parse(root)


def _sem_tiff_scene(root: Path, bar_rows: int) -> Path:
    """Three 16-bit grayscale SEM-style TIFFs (field width only in FEI metadata, no manifest zoom),
    each with a white data bar of ``bar_rows`` rows at the bottom."""
    names = []
    for index, hfw in enumerate([4e-4, 4e-4, 1e-4]):
        pixels = random_rgb(index)[..., 0].astype(np.uint16) * 257
        pixels[H - bar_rows :] = 65535
        name = f"images/sem{index}.tif"
        (root / "images").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / name, pixels, extratags=[(34682, "s", 0, f"[Beam]\nHFW={hfw}\n", True)])
        names.append(name)
    (root / "transforms.json").write_text(json.dumps({"w": W, "h": H, "frames": [{"file_path": n} for n in names]}))
    return root


def test_data_bar_is_cropped_and_principal_point_is_the_kept_centre(tmp_path):
    from PIL import Image

    root = _sem_tiff_scene(tmp_path / "sem", bar_rows=4)
    outputs = parse(root, test_every=0, crop_bottom_rows=4)
    assert outputs.metadata["mzen_dial"].tolist() == pytest.approx([1.0, 1.0, 4.0])
    assert int(outputs.cameras.height[0]) == H - 4 and int(outputs.cameras.width[0]) == W
    assert float(outputs.cameras.cy[0]) == pytest.approx((H - 4) / 2)  # the centre of the scanned area
    for index, path in enumerate(outputs.image_filenames):
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == (H - 4, W, 3) and np.all(pixels[..., 0] == pixels[..., 2])  # grayscale → RGB
        assert np.allclose(pixels[..., 0], random_rgb(index)[: H - 4, :, 0], atol=1)  # bar gone, rest kept


def test_crop_larger_than_the_image_names_the_file(tmp_path):
    root = _sem_tiff_scene(tmp_path / "sem", bar_rows=2)
    with pytest.raises(SceneFormatError, match=r"sem0\.tif.*crop"):
        parse(root, crop_bottom_rows=H)


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize(
    "levels, kept", [("all", [1.0, 1.0, 1.0, 4.0, 16.0]), ("widest", [1.0] * 3), ("zoom-ins", [4.0, 16.0])]
)
def test_training_levels_select_frames_and_keep_every_held_out_frame(make_manifest_scene, levels, kept):
    splits = [{"split": "train"}] * 5 + [{"split": "test"}]
    root = make_manifest_scene(zooms=[1, 1, 1, 4, 16, 4], frames=splits)
    assert sorted(parse(root, "train", train_levels=levels).metadata["mzen_dial"].tolist()) == kept
    assert parse(root, "test", train_levels=levels).metadata["mzen_dial"].tolist() == [4.0]


def test_deterministic_split_per_level_keeps_two_wide_in_train(make_manifest_scene):
    root = make_manifest_scene(zooms=[1] * 9 + [4] * 4 + [16] * 2)
    train, test = parse(root, "train"), parse(root, "test")
    assert len(train.image_filenames) + len(test.image_filenames) == 15
    assert sorted(test.metadata["mzen_dial"].tolist()) == [1.0, 4.0]  # 16x has < 3 frames
    again = parse(root, "test")
    assert again.metadata["mzen_frame_index"].tolist() == test.metadata["mzen_frame_index"].tolist()
    three = make_manifest_scene(zooms=[1, 1, 1])
    assert (parse(three, "train").metadata["mzen_dial"] == 1).sum() >= 2


def test_manifest_split_wins_and_val_means_test(make_manifest_scene):
    frames = [{"split": "train"}, {"split": "train"}, {"split": "test"}, {"split": "train"}]
    root = make_manifest_scene(zooms=[1, 1, 1, 4], frames=frames)
    assert parse(root, "val").metadata["mzen_frame_index"].tolist() == [2]
    assert parse(root, "train").metadata["mzen_frame_index"].tolist() == [0, 1, 3]


def test_manifest_split_leaving_one_wide_in_train_is_an_error(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 4], frames=[{"split": "train"}, {"split": "test"}, {}])
    with pytest.raises(SceneFormatError, match="split"):
        parse(root)


def test_no_held_out_frames_evaluates_on_train(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1])
    assert len(parse(root, "test").image_filenames) == 2


# ----------------------------------------------------------------------------- errors


def test_error_manifest_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneFormatError, match=r"empty/transforms\.json: manifest missing"):
        parse(tmp_path / "empty")


def test_error_scene_folder_missing(tmp_path):
    with pytest.raises(SceneFormatError, match="nowhere: scene folder not found"):
        parse(tmp_path / "nowhere")


def test_error_manifest_not_json(tmp_path):
    (tmp_path / "transforms.json").write_text("{ not json")
    with pytest.raises(SceneFormatError, match=r"transforms\.json: not valid JSON"):
        parse(tmp_path)


@pytest.mark.parametrize("frames", [[], None])
def test_error_no_frames(tmp_path, frames):
    manifest = {"w": W, "h": H} if frames is None else {"w": W, "h": H, "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(manifest))
    with pytest.raises(SceneFormatError, match=r"transforms\.json: no frames"):
        parse(tmp_path)


def test_error_image_missing(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 4])
    (root / "images/f02.png").unlink()
    with pytest.raises(SceneFormatError, match=r"images/f02\.png: image file not found"):
        parse(root)


def test_error_image_unreadable(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 4])
    (root / "images/f01.png").write_bytes(b"\x89PNG\r\n\x1a\n definitely not a png")
    with pytest.raises(SceneFormatError, match=r"images/f01\.png: cannot read image"):
        parse(root)


def test_error_image_truncated(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 4])
    data = (root / "images/f01.png").read_bytes()
    (root / "images/f01.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SceneFormatError, match=r"images/f01\.png"):
        parse(root)


@pytest.mark.parametrize(
    "zoom, message",
    [
        ("4", "is not a number"),
        (True, "is not a number"),
        (None, "is not a number"),
        (0, "must be > 0"),
        (-2, "must be > 0"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
    ],
)
def test_error_bad_zoom(make_manifest_scene, zoom, message):
    root = make_manifest_scene(zooms=[1, 1, zoom])
    with pytest.raises(SceneFormatError, match=rf"frame 2 \(images/f02\.png\): 'zoom' {message}"):
        parse(root)


def test_error_zoom_missing(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 4])
    manifest = json.loads((root / "transforms.json").read_text())
    del manifest["frames"][1]["zoom"]
    (root / "transforms.json").write_text(json.dumps(manifest))
    with pytest.raises(SceneFormatError, match=r"frame 1 \(images/f01\.png\): 'zoom' is missing"):
        parse(root)


def test_error_duplicate_file_path(make_manifest_scene):
    frames = [{}, {"file_path": "images/f00.png"}, {}]
    root = make_manifest_scene(zooms=[1, 1, 1], frames=frames)
    with pytest.raises(SceneFormatError, match=r"frame 1 \(images/f00\.png\): duplicate 'file_path' \(also used by"):
        parse(root)


def test_error_size_mismatch(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1, 4])
    write_png(root / "images/f02.png", random_rgb(9, width=W + 4, height=H))
    with pytest.raises(
        SceneFormatError, match=rf"images/f02\.png\): image is {W + 4}x{H} but the scene's size is {W}x{H}"
    ):
        parse(root)


def test_error_size_mismatch_in_folder_layout(make_folder_scene):
    root = make_folder_scene({"1x": 2, "4x": 1})
    write_png(root / "4x" / "img00.png", random_rgb(1, width=W, height=H + 2))
    with pytest.raises(SceneFormatError, match=r"4x/img00\.png: image is"):
        parse(root)


def test_error_fewer_than_two_wide(make_manifest_scene):
    root = make_manifest_scene(zooms=[2, 8, 8])
    with pytest.raises(
        SceneFormatError, match=r"frame 0 \(images/f00\.png\): fewer than two frames at the widest level"
    ):
        parse(root)


def test_error_fewer_than_two_wide_folder_layout(make_folder_scene):
    with pytest.raises(SceneFormatError, match="fewer than two frames at the widest level"):
        parse(make_folder_scene({"1x": 1, "4x": 3}))


def test_error_foreign_file_in_zoom_folder(make_folder_scene):
    root = make_folder_scene({"1x": 2, "4x": 1})
    (root / "4x" / "notes.txt").write_text("hello")
    with pytest.raises(SceneFormatError, match=r"4x/notes\.txt: not an image"):
        parse(root)
    (root / "4x" / "notes.txt").unlink()
    (root / "4x" / "sub").mkdir()
    with pytest.raises(SceneFormatError, match=r"4x/sub: not an image"):
        parse(root)


@pytest.mark.parametrize(
    "top, message",
    [({"w": "16"}, "'w'"), ({"h": 0}, "'h'"), ({"fl_x": -1.0}, "'fl_x'"), ({"fov_x_deg": 200.0}, "'fov_x_deg'")],
)
def test_error_bad_top_level_field(make_manifest_scene, top, message):
    with pytest.raises(SceneFormatError, match=message):
        parse(make_manifest_scene(zooms=[1, 1], top=top))


@pytest.mark.parametrize("key", ["transform_matrix", "gt_transform_matrix"])
def test_error_bad_matrix(make_manifest_scene, key):
    root = make_manifest_scene(zooms=[1, 1], frames=[{}, {key: [[1, 0], [0, 1]]}])
    with pytest.raises(SceneFormatError, match=rf"frame 1 .*'{key}' must be a finite 4x4 matrix"):
        parse(root)


def test_error_bad_split_value(make_manifest_scene):
    with pytest.raises(SceneFormatError, match=r"frame 0 .*'split'"):
        parse(make_manifest_scene(zooms=[1, 1], frames=[{"split": "validation"}, {}]))


def test_unknown_keys_are_ignored(make_manifest_scene):
    root = make_manifest_scene(zooms=[1, 1], frames=[{"exposure": 3}, {}], top={"camera_model": "OPENCV"})
    assert len(parse(root, test_every=0).image_filenames) == 2


@pytest.mark.slow
def test_uncaught_scene_error_prints_one_clear_line(tmp_path):
    script = (
        "from mzen_dataparsers.ffmzn_dataparser import FFMZNDataParserConfig\n"
        f"FFMZNDataParserConfig(data={str(tmp_path)!r}).setup().get_dataparser_outputs()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "FF-MZN scene error:" in result.stderr and "manifest missing" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- inputs nobody should trust


def _png_header_claiming(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` pixels (and holds almost nothing)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _tiff_header_claiming(path: Path, width: int, height: int) -> None:
    """A few-hundred-byte TIFF whose header declares ``width`` x ``height`` 8-bit pixels."""
    import struct

    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, min(width * height, 2**32 - 1)),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 64)


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_decompression_bomb_headers_are_refused_before_decoding(make_manifest_scene, kind):
    root = make_manifest_scene(zooms=[1, 1, 4], frames=[{}, {}, {"file_path": f"images/bomb.{kind}"}])
    writer = _png_header_claiming if kind == "png" else _tiff_header_claiming
    writer(root / f"images/bomb.{kind}", 100_000, 100_000)
    with pytest.raises(SceneFormatError, match=rf"bomb\.{kind}: image is too large to read safely"):
        parse(root)


def test_capital_x_zoom_folders_count_and_stray_image_folders_are_errors(make_folder_scene):
    root = make_folder_scene({"1x": 2, "16X": 1})
    assert sorted(parse(root, test_every=0).metadata["mzen_dial"].tolist()) == [1.0, 1.0, 16.0]
    write_png(root / "zoomed" / "a.png", random_rgb(7))
    with pytest.raises(SceneFormatError, match=r"zoomed: holds images but its name is not a zoom level"):
        parse(root)
    (root / "zoomed" / "a.png").unlink()
    write_png(root / "loose.png", random_rgb(8))
    with pytest.raises(SceneFormatError, match=r"loose\.png: an image outside the <Z>x/ zoom folders"):
        parse(root)


@pytest.mark.parametrize(
    "frames, top, message",
    [
        ([{}, {}, {"zoom": 1e308}], {}, r"frame 2 .*zoom reading 1e\+308 is .* the smallest"),
        ([{}, {}, {"zoom": 1e30}], {}, r"frame 2 .*readings may differ by at most 10000"),
        ([{}, {}, {"gt_zoom": 1e38}], {}, r"frame 2 .*'gt_zoom'"),
        ([{}, {}, {}], {"fl_x": 1e-300}, r"'fl_x'.*field of view"),
        ([{}, {}, {}], {"fl_x": 1e300}, r"'fl_x'.*field of view"),
        ([{}, {}, {}], {"cx": 1e300}, r"'cx': must lie in"),
        ([{}, {}, {}], {"fov_x_deg": 1e-12}, r"'fov_x_deg': must lie in"),
        ([{}, {}, {}], {"w": 10**9}, r"'w': must be a positive integer up to"),
        (
            [{}, {}, {"transform_matrix": [[1e300, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}],
            {},
            r"frame 2 .*'transform_matrix' has entries beyond",
        ),
    ],
)
def test_absurd_numbers_are_refused_at_parse_time(make_manifest_scene, frames, top, message):
    root = make_manifest_scene(zooms=[1, 1, 4], frames=frames, top=top)
    with pytest.raises(SceneFormatError, match=message):
        parse(root)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_a_deeply_nested_manifest_is_refused(tmp_path, depth):
    (tmp_path / "transforms.json").write_text('{"w": 16, "h": 12, "frames": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(SceneFormatError, match=r"transforms\.json: nested"):
        parse(tmp_path)


@pytest.mark.parametrize("file_path", ["/etc/hostname", "../outside.png", "images/../../outside.png"])
def test_file_paths_must_stay_inside_the_scene(make_manifest_scene, file_path):
    root = make_manifest_scene(zooms=[1, 1, 4], frames=[{}, {}, {"file_path": file_path}], images=False)
    with pytest.raises(SceneFormatError, match=r"frame 2 .*'file_path' must be relative to the scene folder"):
        parse(root)


def _with_exif(path: Path, array: np.ndarray, **tags) -> None:
    """Save ``array`` with EXIF ``orientation``, ``focal`` and ``focal_35mm`` (PNG or JPEG by suffix)."""
    from PIL import Image

    exif = Image.Exif()
    if "orientation" in tags:
        exif[0x0112] = tags["orientation"]
    camera = {}
    if "focal" in tags:
        camera[0x920A] = tags["focal"]
    if "focal_35mm" in tags:
        camera[0xA405] = tags["focal_35mm"]
    if camera:
        exif[0x8769] = camera
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, exif=exif)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(make_manifest_scene, orientation):
    from PIL import Image, ImageOps

    stored = random_rgb(5, width=H, height=W) if orientation in (6, 8) else random_rgb(5)
    root = make_manifest_scene(zooms=[1, 1, 4])
    _with_exif(root / "images/f02.png", stored, orientation=orientation)
    outputs = parse(root, test_every=0)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(root / "images/f02.png")).convert("RGB"))
    assert expected.shape == (H, W, 3)
    assert np.allclose(read_back(outputs, 2), expected / 255.0, atol=1 / 255)


def test_zoom_and_focal_guess_from_exif(make_manifest_scene, capsys):
    root = make_manifest_scene(zooms=[1, 1, 4], frames=[{}, {}, {}])
    for index, focal in enumerate([6.0, 6.0, 24.0]):
        _with_exif(root / f"images/f{index:02d}.png", random_rgb(index), focal=focal, focal_35mm=focal * 5)
    manifest = json.loads((root / "transforms.json").read_text())
    for frame in manifest["frames"]:
        del frame["zoom"]
    (root / "transforms.json").write_text(json.dumps(manifest))
    outputs = parse(root, test_every=0)
    assert outputs.metadata["mzen_dial"].tolist() == [1.0, 1.0, 4.0]
    fx, _ = outputs.metadata["mzen_focal_guess"]
    assert fx == pytest.approx(30.0 * math.hypot(W, H) / math.hypot(36, 24))
    printed = capsys.readouterr().out
    assert "images/f02.png: 24 from EXIF FocalLength" in printed and "35 mm-equivalent focal length 30" in printed


def _fei_tiff(path: Path, text: str, width: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, random_rgb(0, width=width)[..., 0], extratags=[(34682, "s", 0, text, True)])


def _zeiss_tiff(path: Path, text: str) -> None:
    """Zeiss writes its CZ_SEM block as bytes in Windows-1252 (µ is 0xB5)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("cp1252")
    tifffile.imwrite(path, random_rgb(0)[..., 0], extratags=[(34118, "B", len(data), data, True)])


@pytest.mark.parametrize(
    "writer, text, reading, source",
    [
        (_fei_tiff, "[EBeam]\nHFW=2e-05\n", 5e4, "[EBeam] HFW"),
        (_fei_tiff, "[Beam]\nBeam=IBeam\n[IBeam]\nHFW=4e-05\n[EBeam]\nHFW=1e-05\n", 2.5e4, "[IBeam] HFW"),
        (_fei_tiff, f"[Scan]\nPixelWidth={1e-6}\n", 1e6 / W, "[Scan] PixelWidth"),
        (_zeiss_tiff, "AP_WIDTH\nWidth = 125.0 µm\nAP_MAG\nMag = 2.00 K X\n", 8000.0, "CZ_SEM AP_WIDTH"),
        (_zeiss_tiff, "AP_MAG\nMag = 2.00 K X\n", 2000.0, "CZ_SEM AP_MAG"),
    ],
)
def test_sem_magnification_as_instruments_write_it(tmp_path, writer, text, reading, source):
    from mzen_dataparsers.tiff_metadata import tiff_magnification

    writer(tmp_path / "sem.tif", text)
    found = tiff_magnification(tmp_path / "sem.tif")
    assert found.value == pytest.approx(reading, rel=1e-9) and found.source.startswith(source)
    assert not found.disagreements  # the other column of a dual-beam FIB is not a rival source


def test_sem_sources_that_disagree_are_reported(make_manifest_scene, capsys):
    root = make_manifest_scene(zooms=[1, 1, 4], frames=[{}, {}, {"file_path": "images/sem.tif"}])
    _fei_tiff(root / "images/sem.tif", f"[EBeam]\nHFW=1e-05\n[Scan]\nPixelWidth={2e-5 / W}\n")
    for index in range(2):
        _fei_tiff(root / f"images/f0{index}.tif", "[EBeam]\nHFW=4e-05\n")
    manifest = json.loads((root / "transforms.json").read_text())
    manifest["frames"] = [{"file_path": f"images/f0{i}.tif"} for i in range(2)] + [{"file_path": "images/sem.tif"}]
    (root / "transforms.json").write_text(json.dumps(manifest))
    assert parse(root, test_every=0).metadata["mzen_dial"].tolist() == pytest.approx([1.0, 1.0, 4.0])
    assert "SEM metadata of images/sem.tif disagrees with itself" in capsys.readouterr().out
