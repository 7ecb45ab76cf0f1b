"""``mzen-viewer-screenshot``: start ``ns-viewer`` on an mzen run, load the page in headless
Chromium and save a screenshot — a check, in a real browser, that the viewer draws the learned
frustums and the mzen panel.

    mzen-viewer-screenshot --output viewer.png                      # trains a short demo run first
    mzen-viewer-screenshot --load-config outputs/.../config.yml --output viewer.png

Needs Chromium (Debian/Ubuntu: ``apt-get install chromium``); WebGL runs on its software renderer
(SwiftShader), so no GPU is needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import tyro
from rich.console import Console

CONSOLE = Console()
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass
class ViewerScreenshot:
    """Screenshot of nerfstudio's viewer on an mzen run."""

    output: Path = Path("viewer.png")
    """PNG to write."""
    load_config: Optional[Path] = None
    """The run's config.yml; default: train the embedded demo scene for ``demo_steps`` first."""
    demo_steps: int = 300
    """Steps of the demo run (CPU preset; its phases scale with the steps)."""
    size: Tuple[int, int] = (1400, 900)
    """Browser window (width, height)."""
    wait_s: float = 25.0
    """Browser time budget for the page to connect and draw, seconds."""
    composite_depth: bool = False
    """Let the rendered scene hide frustums behind its density (off, so every frustum shows)."""
    browser: Optional[str] = None
    """Browser executable (default: the first of chromium, chromium-browser, google-chrome on PATH)."""

    def main(self) -> Path:
        """Train (if needed), start the viewer, take the screenshot; the PNG's path."""
        browser = self.browser or next((b for b in BROWSERS if shutil.which(b)), None)
        if browser is None or shutil.which(browser) is None:
            raise SystemExit(
                f"no Chromium found (looked for {', '.join(BROWSERS)}); install it, e.g. apt-get install chromium"
            )
        config = self.load_config or train_demo(Path(tempfile.mkdtemp(prefix="mzen-demo-")), self.demo_steps)
        port = free_port()
        viewer = subprocess.Popen(
            [
                "ns-viewer",
                "--load-config",
                str(config),
                "--viewer.websocket-port",
                str(port),
                "--viewer.websocket-host",
                "127.0.0.1",
                "--viewer.default-composite-depth",
                str(self.composite_depth),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}", viewer, timeout_s=300)
            self.output.parent.mkdir(parents=True, exist_ok=True)
            shoot(browser, f"http://127.0.0.1:{port}", self.output.resolve(), self.size, self.wait_s)
        finally:
            viewer.terminate()
            viewer.wait(timeout=30)
        CONSOLE.print(f"[bold green]Wrote[/] {self.output}")
        return self.output


def train_demo(output_dir: Path, steps: int) -> Path:
    """Train ``mzen-cpu`` on the embedded demo scene; its config.yml."""
    command = [
        "ns-train",
        "mzen-cpu",
        "--output-dir",
        str(output_dir),
        "--experiment-name",
        "demo",
        "--timestamp",
        "screenshot",
        "--vis",
        "tensorboard",
        "--max-num-iterations",
        str(steps),
    ]
    CONSOLE.print("training the demo run: " + " ".join(command))
    subprocess.run(command, check=True)
    return next(output_dir.glob("demo/*/screenshot/config.yml"))


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    """Block until ``url`` answers (the viewer loads the checkpoint first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ns-viewer exited with code {process.returncode} before serving {url}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1.0)
    raise SystemExit(f"ns-viewer did not serve {url} within {timeout_s:.0f} s")


def shoot(browser: str, url: str, output: Path, size: Tuple[int, int], wait_s: float) -> None:
    """Headless Chromium screenshot of ``url`` with software WebGL."""
    command: List[str] = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
        f"--virtual-time-budget={int(wait_s * 1000)}",
        f"--screenshot={output}",
        url,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=wait_s * 8 + 60)
    if not output.is_file():
        raise SystemExit(f"{browser} did not write {output}")


def entrypoint() -> None:
    """Console script."""
    tyro.cli(ViewerScreenshot).main()


if __name__ == "__main__":
    sys.exit(entrypoint())
