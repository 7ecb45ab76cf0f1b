"""mzen in nerfstudio's viewer (``ns-train mzen`` live, ``ns-viewer --load-config``).

nerfstudio draws each training camera once from the dataset (for mzen: the identity start) and
moves it with its own camera optimizer's delta, composed as ``c2w @ delta`` — not how mzen (or,
for translations, nerfstudio's optimizer itself) applies a pose — and never changes a frustum's
field of view. :class:`CameraPanel` replaces those frustums by ones drawn from
:meth:`ZoomCameras.c2w` and the learned focal × zoom — the very functions that generate the
training rays — coloured by zoom level (a 16× zoom-in is a narrow frustum inside its wide
view's), and keeps them current during training. It also shows a panel (phase, learned focal,
a per-level table of zooms, the crop-and-match pairs) and a magnification control that narrows
the viewer camera's field of view to the wide view's divided by the chosen factor.

nerfstudio finds these through the pipeline's attributes (``ViewerElement`` and ``ViewerControl``
instances inside ``nn.Module`` attributes), so both ``ns-train`` and ``ns-viewer`` pick them up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerElement, ViewerSlider
from torch import nn

LEVEL_COLOURS: Tuple[Tuple[int, int, int], ...] = (
    (31, 119, 180),  # wide: blue
    (255, 127, 14),  # orange
    (214, 39, 40),  # red
    (44, 160, 44),  # green
    (148, 103, 189),  # purple
)
"""Frustum colour per zoom level (widest first), cycling past the fifth."""


@dataclass(frozen=True)
class Frustum:
    """One training camera as the viewer draws it."""

    index: int
    """Training-image index."""
    c2w: Float[np.ndarray, "3 4"]
    """Learned camera-to-world (OpenGL, scene units)."""
    fov_y: float
    """Vertical field of view (radians) at the learned focal × zoom."""
    aspect: float
    """Width over height."""
    level: int
    """Zoom level (0: wide)."""
    colour: Tuple[int, int, int]
    """RGB of the frustum's outline."""
    size: float
    """viser's frustum ``scale`` relative to a wide view's. viser draws every frustum with the same
    volume, so a narrow one would be drawn long; ``(tan(fov/2) / tan(fov_wide/2))^(2/3)`` gives
    every frustum the same depth, and a zoom-in sits inside its wide view's frustum."""


@dataclass(frozen=True)
class PanelState:
    """What the panel shows; the same numbers ``mzen-export-cameras`` writes."""

    phase: str
    """Current phase (A/B/C), or ``done`` after training."""
    step: Optional[int]
    """Training step of the values (None when unknown)."""
    focal: float
    """Learned base focal (pixels, widest level)."""
    wide_fov_x_deg: float
    """Horizontal field of view of a wide view at that focal."""
    levels: List[Dict[str, Any]]
    """Per level: ``level``, ``dial``, ``frames``, learned ``zoom_mean``/``zoom_min``/``zoom_max``."""
    pairs: List[Tuple[str, str]]
    """Crop-and-match pairs (zoom-in file, wide file it was primed from)."""
    flagged: Tuple[str, ...] = ()
    """Zoom-ins whose match was not clearly better than the runner-up (priming flagged them)."""
    flagged_left_out: bool = True
    """Whether flagged zoom-ins are left out of the field (phase C does not train on them)."""


def wide_fov_y(cameras: Any) -> float:
    """Vertical field of view (radians) of a wide view at the learned focal."""
    return 2.0 * math.atan(0.5 * cameras.height / float(cameras.focal * cameras.aspect))


def frustums(cameras: Any, levels: torch.Tensor) -> List[Frustum]:
    """The learned frustum of every training camera (``cameras``: :class:`ZoomCameras`)."""
    with torch.no_grad():
        c2w = cameras.c2w().cpu().numpy()
        fy = (cameras.focal * cameras.aspect * cameras.zoom()).cpu().numpy()
    aspect = cameras.width / cameras.height
    wide_tan = math.tan(0.5 * wide_fov_y(cameras))
    return [
        Frustum(
            index=i,
            c2w=c2w[i],
            fov_y=2.0 * math.atan(0.5 * cameras.height / float(fy[i])),
            aspect=aspect,
            level=int(levels[i]),
            colour=LEVEL_COLOURS[int(levels[i]) % len(LEVEL_COLOURS)],
            size=(0.5 * cameras.height / float(fy[i]) / wide_tan) ** (2.0 / 3.0),
        )
        for i in range(c2w.shape[0])
    ]


def overview_camera(
    c2w: np.ndarray, scale: float = 1.0, distance: float = 3.0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A viewpoint (position, look-at point, up direction; world units × ``scale``) that sees all
    cameras ``c2w`` (N, 3, 4; OpenGL): behind them along their mean viewing direction and above
    along their mean up direction, ``distance`` × their spread (at least 0.5) away, looking at
    their centroid."""
    centres = c2w[:, :, 3]
    centroid = centres.mean(axis=0)
    forward = -c2w[:, :, 2].mean(axis=0)
    forward /= max(float(np.linalg.norm(forward)), 1e-9)
    up = c2w[:, :, 1].mean(axis=0)
    up -= forward * float(up @ forward)
    up /= max(float(np.linalg.norm(up)), 1e-9)
    spread = max(float(np.linalg.norm(centres - centroid, axis=1).max()), 0.5 / distance)
    position = centroid - distance * spread * forward + 0.6 * distance * spread * up
    return position * scale, centroid * scale, up


def panel_state(
    cameras: Any,
    levels: torch.Tensor,
    dials: List[float],
    names: List[str],
    phase: str,
    step: Optional[int],
    flagged_left_out: bool = True,
) -> PanelState:
    """The panel's values from the learned cameras (``levels``: level per image; ``dials``: the
    scene's dial per level; ``names``: file path per image; ``flagged_left_out``: whether the field
    is trained without the flagged zoom-ins)."""
    with torch.no_grad():
        zooms = cameras.zoom().cpu()
        focal = float(cameras.focal)
    rows = []
    for level, dial in enumerate(dials):
        members = zooms[levels.cpu() == level]
        if members.numel() == 0:
            continue
        rows.append(
            {
                "level": level,
                "dial": float(dial),
                "frames": int(members.numel()),
                "zoom_mean": float(members.mean()),
                "zoom_min": float(members.min()),
                "zoom_max": float(members.max()),
            }
        )
    matched = cameras.match.root.cpu().tolist()
    pairs = [(names[i], names[m]) for i, m in enumerate(matched) if m >= 0 and not bool(cameras.is_wide[i])]
    flagged = tuple(names[i] for i in torch.nonzero(cameras.match.flagged.cpu()).squeeze(-1).tolist())
    fov_x = math.degrees(2.0 * math.atan(0.5 * cameras.width / focal))
    return PanelState(
        phase=phase,
        step=step,
        focal=focal,
        wide_fov_x_deg=fov_x,
        levels=rows,
        pairs=pairs,
        flagged=flagged,
        flagged_left_out=flagged_left_out,
    )


def panel_phase(pipeline: Any, step: Optional[int]) -> str:
    """The pipeline's current phase; for a loaded run the phase of its checkpoint (``done`` at the
    end of the schedule)."""
    if pipeline.phase is not None:
        return pipeline.phase
    step = step if step is not None else pipeline.loaded_step
    if step is None:
        return "not started"
    return "done" if step >= pipeline.phase_schedule.end - 1 else pipeline.phase_schedule.phase_at(step)


def panel_markdown(state: PanelState, max_pairs: int = 40) -> str:
    """The panel as markdown."""
    step = "" if state.step is None else f" (step {state.step})"
    lines = [
        f"**Phase:** {state.phase}{step}",
        "",
        f"**Focal:** {state.focal:.2f} px (wide FoV {state.wide_fov_x_deg:.2f}°)",
        "",
        "| level | dial | frames | zoom mean | min | max |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['level']} | {r['dial']:g} | {r['frames']} | {r['zoom_mean']:.3f} | {r['zoom_min']:.3f} | "
        f"{r['zoom_max']:.3f} |"
        for r in state.levels
    ]
    fate = ", left out of the field" if state.flagged_left_out else ""
    flags = f", {len(state.flagged)} flagged: no clear best match{fate}" if state.flagged else ""
    lines += ["", f"**Priming** ({len(state.pairs)} zoom-ins primed{flags})", ""]
    mark = "flagged, not in field" if state.flagged_left_out else "flagged"
    if state.pairs:
        lines += ["| zoom-in | wide | |", "|---|---|---|"]
        lines += [
            f"| {zoom} | {wide} | {mark if zoom in state.flagged else ''} |" for zoom, wide in state.pairs[:max_pairs]
        ]
        if len(state.pairs) > max_pairs:
            lines.append(f"| … {len(state.pairs) - max_pairs} more | |")
    else:
        lines.append("not run yet (phase B primes the zoom-ins)")
    return "\n".join(lines)


def magnified_fov(wide_fov: float, magnification: float) -> float:
    """Field of view (same axis and unit as ``wide_fov``, radians) of a camera ``magnification``×
    narrower than the wide view: ``2 atan(tan(wide/2) / m)``."""
    if magnification <= 0:
        raise ValueError(f"magnification must be positive, got {magnification}")
    return 2.0 * math.atan(math.tan(0.5 * wide_fov) / magnification)


class ViewerMarkdown(ViewerElement[str]):
    """A read-only markdown block in the viewer's control panel."""

    def __init__(self, name: str, content: str = "") -> None:
        super().__init__(name)
        self.content = content

    def _create_gui_handle(self, viser_server: Any) -> None:
        self.gui_handle = viser_server.gui.add_markdown(self.content)

    def install(self, viser_server: Any) -> None:
        self._create_gui_handle(viser_server)

    def set_content(self, content: str) -> None:
        """Show ``content`` (kept for when the element is installed later)."""
        self.content = content
        if self.gui_handle is not None:
            self.gui_handle.content = content  # type: ignore[union-attr]


class CameraPanel(nn.Module):
    """The viewer's mzen panel, frustums and magnification control (an ``nn.Module`` only so that
    nerfstudio's viewer finds its elements; it has no parameters or buffers)."""

    def __init__(self, pipeline: Callable[[], Any]) -> None:
        super().__init__()
        self._pipeline = pipeline
        self.summary = ViewerMarkdown("mzen cameras")
        self.magnification = ViewerSlider(
            "Magnification",
            1.0,
            1.0,
            64.0,
            step=0.5,
            cb_hook=lambda element: self.apply_magnification(element.value),
            hint="Render the viewer camera at the wide view's field of view divided by this factor",
        )
        self.control = _FrustumControl(self)
        self.state: Optional[PanelState] = None

    def refresh(self, step: Optional[int] = None) -> PanelState:
        """Recompute the panel and, when a viewer is attached, redraw the frustums."""
        pipeline = self._pipeline()
        cameras = pipeline.mzen_model.cameras
        metadata = pipeline.datamanager.train_dataset.metadata
        levels = metadata["mzen_level"]
        phase = panel_phase(pipeline, step)
        self.state = panel_state(
            cameras,
            levels,
            list(metadata["mzen_levels"]),
            [str(p) for p in metadata["mzen_file_paths"]],
            phase,
            step,
            pipeline.config.model.phases.flagged_left_out,
        )
        self.summary.set_content(panel_markdown(self.state))
        if self.control.viewer is not None:
            self.control.draw(frustums(cameras, levels))
        return self.state

    def wide_fov_y(self) -> float:
        """Vertical field of view (radians) of a wide view at the learned focal."""
        return wide_fov_y(self._pipeline().mzen_model.cameras)

    def apply_magnification(self, magnification: float) -> float:
        """Narrow every connected viewer camera to the wide FoV / ``magnification``; the new FoV."""
        fov = magnified_fov(self.wide_fov_y(), magnification)
        self.control.set_fov(math.degrees(fov))
        return fov


class _FrustumControl(ViewerControl):
    """Draws :class:`CameraPanel`'s frustums in place of nerfstudio's and sets the client FoV."""

    def __init__(self, panel: CameraPanel) -> None:
        self._panel = panel
        self.viewer: Any = None
        self._thumbnails: Dict[int, np.ndarray] = {}

    def _setup(self, viewer: Any) -> None:
        super()._setup(viewer)
        init_scene = viewer.init_scene

        def init_then_replace(*args, **kwargs):  # nerfstudio draws its frustums here; replace them after
            init_scene(*args, **kwargs)
            self._panel.refresh()

        viewer.init_scene = init_then_replace
        viewer.viser_server.on_client_connect(self._overview)

    def _overview(self, client: Any) -> None:
        """Start a new client's camera behind and above the learned cameras, looking past them
        into the scene, so every frustum is in view (nerfstudio's default camera may sit inside it)."""
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        with torch.no_grad():
            c2w = self._panel._pipeline().mzen_model.cameras.c2w().cpu().numpy()
        position, look_at, up = overview_camera(c2w, VISER_NERFSTUDIO_SCALE_RATIO)
        with client.atomic():
            client.camera.up_direction = up
            client.camera.position = position
            client.camera.look_at = look_at

    def set_fov(self, fov: float) -> None:
        """Set every connected client's vertical FoV (degrees)."""
        for client in self.viser_server.get_clients().values():
            client.camera.fov = math.radians(fov)

    def draw(self, cameras: List[Frustum]) -> None:
        """(Re)draw the frustums; nerfstudio's show/hide buttons act on them."""
        import viser.transforms as vtf
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        handles = self.viewer.camera_handles if getattr(self.viewer, "camera_handles", None) is not None else {}
        visible = all(h.visible for h in handles.values()) if handles else True
        with self.viser_server.atomic():
            for frustum in cameras:
                if frustum.index in handles:
                    handles[frustum.index].remove()
                rotation = vtf.SO3.from_matrix(frustum.c2w[:, :3]) @ vtf.SO3.from_x_radians(np.pi)  # OpenGL → viser
                handle = self.viser_server.scene.add_camera_frustum(
                    name=f"/cameras/camera_{frustum.index:05d}",
                    fov=frustum.fov_y,
                    aspect=frustum.aspect,
                    scale=self.viewer.config.camera_frustum_scale * frustum.size,
                    color=frustum.colour,
                    image=self._thumbnail(frustum.index),
                    wxyz=rotation.wxyz,
                    position=frustum.c2w[:, 3] * VISER_NERFSTUDIO_SCALE_RATIO,
                    visible=visible,
                )
                handle.on_click(self._go_to(frustum.index))
                handles[frustum.index] = handle
                if hasattr(self.viewer, "original_c2w"):  # nerfstudio's pose update then keeps ours
                    self.viewer.original_c2w[frustum.index] = np.concatenate([frustum.c2w, [[0, 0, 0, 1]]])
        self.viewer.camera_handles = handles

    def _go_to(self, index: int):
        def on_click(event) -> None:
            with event.client.atomic():
                event.client.camera.position = event.target.position
                event.client.camera.wxyz = event.target.wxyz
            self.viewer.current_camera_idx = index

        return on_click

    def _thumbnail(self, index: int, height: int = 100) -> np.ndarray:
        if index not in self._thumbnails:
            image = self._panel._pipeline().datamanager.train_dataset.get_image_float32(index)[..., :3]
            scale = height / image.shape[0]
            size = (height, max(1, round(image.shape[1] * scale)))
            small = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=size, mode="area")[0]
            self._thumbnails[index] = (small.permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8).numpy()
        return self._thumbnails[index]
