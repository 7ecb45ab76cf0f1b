"""Every benchmark script loads and answers ``--help`` (a refactor of the package must not break
them silently), and benchmarks/README.md indexes each one."""

from __future__ import annotations

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
