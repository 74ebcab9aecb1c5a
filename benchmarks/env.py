"""The machine and software a run was measured on.

Versions are read with ``importlib.metadata`` rather than by importing the
packages: importing ``trio_asyncio`` patches asyncio for the whole process, and
the parent process must stay neutral. Every result file carries this
record, because latency numbers mean nothing without the machine they came from.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata

PACKAGES: tuple[str, ...] = (
    "trio",
    "trio-asyncio",
    "livekit-agents",
    "livekit",
    "trio-playout",
    "matplotlib",
)


def package_version(dist: str) -> str | None:
    """The installed version of ``dist``, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def environment() -> dict[str, object]:
    """A JSON-ready description of this machine, interpreter and packages."""
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_usable": _usable_cpus(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "switchinterval_s": sys.getswitchinterval(),
        "versions": {name: package_version(name) for name in PACKAGES},
    }
