"""Voice peer ``bridge``: the livekit peer's AgentSession hosted by our bridge.

``python -m benchmarks.peer_bridge --spec SPEC.json --out OUT.json`` (the contract in
``benchmarks/PEERS.md``). The very same code as :mod:`benchmarks.peer_livekit`
(its fakes, its paced input, its pausable speaker, one fresh ``AgentSession`` per
trial), run as an asyncio task on the bridge's trio-asyncio loop (``bridge.run``,
trio first): what hosting livekit on trio costs the user's voice. No trio tool runs
in these scenarios, so this is the loop's cost alone.
"""

from __future__ import annotations

import argparse
from typing import Any

import bridge
from benchmarks import _peer_sink as ps
from benchmarks.peer_livekit import run_all


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await bridge.aio(run_all)(spec, "bridge")
    out["versions"].update(ps.versions("trio", "trio-asyncio", "trio-playout"))
    out["settings"]["forced_differences"].append(
        "hosted by bridge.run: livekit's asyncio loop is trio-asyncio's, as one trio task")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    spec = ps.load_spec(a.spec)
    ps.write_out(a.out, bridge.run(_main, spec))


if __name__ == "__main__":
    main()
