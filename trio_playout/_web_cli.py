"""``python -m trio_playout.web``: serve the page and the offline (or an OpenAI-compatible) agent."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

import trio

from ._web_agent import AgentConfig, default_factory
from ._web_protocol import is_loopback
from ._web_server import ServerOptions, WebServer

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trio_playout.web",
        description="Talk to a trio-playout voice agent in the browser (one conversation per websocket).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; any other "
                   "needs --token)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--token", default=os.environ.get("TRIO_PLAYOUT_WEB_TOKEN"),
                   help="required as ?token=... on the page's URL (env TRIO_PLAYOUT_WEB_TOKEN)")
    p.add_argument("--origin", action="append", default=[],
                   help="another allowed Origin, exactly as the browser sends it (repeatable)")
    p.add_argument("--max-conversations", type=int, default=16, help="conversations at once (default 16)")
    p.add_argument("--llm-base-url", default=os.environ.get("OPENAI_BASE_URL"),
                   help="an OpenAI-compatible server for the LLM (env OPENAI_BASE_URL; key: OPENAI_API_KEY)")
    p.add_argument("--llm-model", default=os.environ.get("TRIO_PLAYOUT_LLM_MODEL"),
                   help="the model name for --llm-base-url (default gpt-4o-mini)")
    p.add_argument("--pause-on-speech-start", action="store_true",
                   help="pause the agent at the VAD's start of speech (resume at once after a cough)")
    p.add_argument("--silent-tts", action="store_true",
                   help="no espeak-ng (GPL): a silent voice whose words still time the heard text")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not is_loopback(args.host) and not args.token:
        print(f"error: refusing to listen on {args.host} without --token: anyone who can reach it could "
              "talk to the agent. Pass --token SECRET (and open the page with ?token=SECRET), or bind "
              "127.0.0.1.", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        options = ServerOptions(token=args.token or None, origins=frozenset(args.origin),
                                max_conversations=args.max_conversations)
        factory = default_factory(AgentConfig(llm_base_url=args.llm_base_url, llm_model=args.llm_model,
                                              silent_tts=args.silent_tts,
                                              pause_on_speech_start=args.pause_on_speech_start))
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = WebServer(factory, options)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, args.host, args.port)
            query = f"?token={args.token}" if args.token else ""
            print(f"talk to it: http://{args.host}:{server.port}/{query}", flush=True)

    failed: list[OSError] = []

    async def run_checked() -> None:
        try:
            await run()
        except BaseExceptionGroup as group:
            matched, rest = group.split(OSError)
            if rest is not None:
                raise
            assert matched is not None
            failed.extend(e for e in matched.exceptions if isinstance(e, OSError))

    try:
        trio.run(run_checked)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the user stopped it, a normal end
    except BaseExceptionGroup as group:
        # Before Python 3.12 nothing unwraps a group holding only Ctrl-C (trio's nursery
        # wraps it): an ExceptionGroup traceback and exit status 1 for a normal stop.
        if group.split(KeyboardInterrupt)[1] is not None:
            raise
    if failed:
        print(f"error: cannot listen on {args.host}:{args.port}: {failed[0]}", file=sys.stderr)
        return 1
    return 0
