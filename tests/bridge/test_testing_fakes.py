"""The fakes in bridge.testing: importable without trio_asyncio, honest on plain asyncio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_bridge_testing_does_not_import_trio_asyncio() -> None:
    code = (
        "import bridge, bridge.testing, sys; "
        "assert 'trio_asyncio' not in sys.modules, 'bridge.testing imported trio_asyncio'; "
        "assert 'trio' not in sys.modules, 'bridge.testing imported trio'; "
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
