"""Process-level helpers: resident memory and the worker's progress channel.

Memory is read from ``/proc/self/status`` (VmRSS now, VmHWM peak) because that is
what a process holding many conversations actually costs the machine;
tracemalloc would slow the very code being measured.
"""

from __future__ import annotations

import resource
import sys
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
