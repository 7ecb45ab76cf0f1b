"""The allocator setting CPU runs make: large freed blocks stay in the heap instead of going back
to the system and being faulted in again at the next step."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mzen_ns import patches

_FREE_16_MIB = textwrap.dedent(
    """
    import sys
    from mzen_ns import patches
    if sys.argv[1] == "keep":
        assert patches.keep_freed_memory()
    import torch

    def resident():
        return int(open("/proc/self/statm").read().split()[1]) * 4096

    block = torch.ones(4 << 20)  # 16 MiB
    held = resident()
    del block
    print(held - resident())
    """
)


def returned_on_free(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FREE_16_MIB, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_a_freed_large_block_stays_in_the_heap_once_asked():
    assert returned_on_free("default") >= 12 << 20  # glibc maps a 16 MiB block and unmaps it on free
    assert returned_on_free("keep") < 1 << 20


def test_without_a_c_library_to_ask_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(patches.ctypes.util, "find_library", lambda name: None)
    assert patches.keep_freed_memory() is False


@pytest.mark.slow
def test_a_cpu_run_asks_for_it_when_its_trainer_is_set_up(tmp_path, monkeypatch):
    from tests.helpers import build, tiny_scene, tiny_trainer_config

    calls = []
    monkeypatch.setattr(patches, "keep_freed_memory", lambda: calls.append(True) or True)
    build(tiny_trainer_config(tiny_scene(tmp_path / "scene"), tmp_path / "out", steps=2))
    assert calls == [True]
