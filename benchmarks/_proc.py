"""Process-level helpers: resident memory, the worker's progress channel, the load.

Memory is read from ``/proc/self/status`` (VmRSS now, VmHWM peak) because that is
what a process holding many conversations actually costs the machine;
tracemalloc would slow the very code being measured.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Resident set size now, in bytes (0 if unknown)."""
    kb = _status_kb("VmRSS")
    return (kb or 0) * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024


_progress_sink: Callable[[int, int], None] | None = None


def set_progress_sink(sink: Callable[[int, int], None]) -> None:
    """Where :func:`report_progress` sends its counts (the runner's pipe)."""
    global _progress_sink
    _progress_sink = sink


def report_progress(done: int, total: int) -> None:
    """Tell the parent how far this configuration is (the runner's pipe, else one
    ``PROGRESS done total`` line on stdout when run as ``python -m benchmarks._worker``)."""
    if _progress_sink is not None:
        _progress_sink(done, total)
        return
    sys.stdout.write(f"PROGRESS {done} {total}\n")
    sys.stdout.flush()


# -- background load (``python -m benchmarks --load``) -----------------------------------

#: ``--load`` modes: what the second process does and where it runs.
LOAD_MODES: dict[str, str] = {
    "none": "no load",
    "busy": "one busy-loop process, not pinned (the kernel places it and the worker)",
    "pinned": "one busy-loop process pinned to the last CPU; the worker is not pinned",
    "shared": "one busy-loop process and the worker both pinned to the last CPU "
              "(they time-share one core)",
}

_BUSY_LOOP = "while True:\n    pass\n"


def _last_cpu() -> int:
    return max(os.sched_getaffinity(0))


class BusyLoad:
    """The ``--load`` process: a Python busy loop keeping one core busy.

    The runner starts it once for the whole run, before the first configuration, so
    every implementation (each in its own worker process) runs beside the same load;
    :meth:`worker_cpus` says where a worker should pin itself (``shared`` only).
    """

    def __init__(self, mode: str) -> None:
        if mode not in LOAD_MODES:
            raise ValueError(f"unknown load mode {mode!r}; choose from {', '.join(LOAD_MODES)}")
        self.mode = mode
        self._proc: subprocess.Popen[bytes] | None = None

    def worker_cpus(self) -> set[int] | None:
        return {_last_cpu()} if self.mode == "shared" else None

    def __enter__(self) -> BusyLoad:
        if self.mode != "none":
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BUSY_LOOP],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self.mode in ("pinned", "shared"):
                os.sched_setaffinity(self._proc.pid, {_last_cpu()})
            time.sleep(0.2)  # let it reach full speed before the first measurement
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
