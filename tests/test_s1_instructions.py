"""Smoke test of ``benchmarks.s1_instructions`` (callgrind instruction counts of S1)."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

from benchmarks import s1_instructions

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None or shutil.which("gcc") is None
    or not Path("/usr/include/valgrind/callgrind.h").is_file()
    or not Path(sysconfig.get_paths()["include"], "Python.h").is_file(),
    reason="needs valgrind (with callgrind.h), gcc and the Python headers",
)


def test_counts_the_interrupt_window_and_the_floor(tmp_path: Path) -> None:
    s1_instructions._build(tmp_path)
    interrupt = s1_instructions._count(tmp_path, "interrupt", 1)
    hop = s1_instructions._count(tmp_path, "two_hop", 1)
    # Both windows were collected (a toggle left off would count nothing), and the
    # whole program was not (a toggle left on would count millions: start-up alone
    # is tens of millions of instructions).
    assert 1_000 < interrupt < 2_000_000
    assert 1_000 < hop < 2_000_000
