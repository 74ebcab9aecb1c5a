"""Talk to a trio-native agent in the browser: one websocket, one conversation (extra ``web``).

``python -m trio_playout.web`` serves a page on http://127.0.0.1:8000/ and runs the
offline agent (Silero VAD, PocketSphinx STT, :class:`~trio_playout.offline.RuleLLM`,
espeak-ng) for every browser that connects; ``--llm-base-url``/``--llm-model`` (or
``OPENAI_BASE_URL``) use an OpenAI-compatible LLM instead. In code::

    server = WebServer(factory, ServerOptions(token="s3cret"))   # factory(info) -> Agent
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, "0.0.0.0", 8000)

The sink, :class:`WebSocketOutput`, is the browser's own player: a segment finishes
only when the page reports that its audio stopped (``finished``/``cleared`` with
the position really played), so ``wait_for_playout()`` means "the user's speaker
went quiet", and the heard text in history is cut where the page says it stopped. A
page that never reports is bounded by the session's ``sink_grace``.

Why trio-websocket with a bare h11 front (and not hypercorn): we serve one page and
one websocket, and want every task, buffer and timeout of a connection in our own
nursery: hypercorn brings an ASGI layer (and its own task structure and config
surface) for features we do not use. trio-websocket (on wsproto) does the
websocket framing and closes an oversized message with 1009 before buffering more
than ``max_message_size``; h11 reads the request head (bounded) and answers the
page; the head's bytes are replayed to trio-websocket for ``/ws``. The same library
is the Python client of the tests and the benchmark.

Protocol (version 1)
====================

HTTP: ``GET /`` the page (``index.html``), ``GET /static/<name>`` its files (only
``.js``/``.css``/``.html`` files present in the page directory; no paths), ``GET
/ws`` the websocket. Anything else: 404 (405 for other methods). One request per
TCP connection (``Connection: close``). With a token, ``/ws`` needs ``?token=T``
(the page itself is public: it holds no secret; open it as ``/?token=T`` and it
passes the token on). ``Origin``: a browser's must be ``http(s)://`` + the ``Host``
it connected to (or one given with ``--origin``); a request without ``Origin`` is
not from a browser and is allowed (the token still applies): browsers always send
it on websockets, so a web page elsewhere cannot ride on it. ``Host``: on a
loopback address only ``127.0.0.1:P``, ``localhost:P``, ``[::1]:P`` (the bind
address and port) and the hosts of ``--origin`` are answered, for the page and
``/ws``; anything else gets 421 (DNS rebinding: a rebound name sends a Host and an
Origin that agree). The upgrade head must be a websocket version 13 one
(``Upgrade: websocket``, ``Connection: Upgrade``, a 16-byte key, no body): 400 or
426 otherwise; the handshake completes within ``request_timeout`` (10 s). Bytes
sent right behind the head are kept for the websocket.

Client -> server, text (JSON objects, at most 4096 characters; unknown fields are
ignored, unknown types are not):

* ``{"type":"hello","protocol":1,"sample_rate":16000}``: first, within 10 s; the
  rate of the microphone PCM (8000-48000).
* player reports, ``segment`` being the server's segment number:
  ``{"type":"started","segment":N}``; ``{"type":"progress","segment":N,"position":S}``
  (seconds of N played so far; every 100-250 ms while playing keeps the lead small);
  ``{"type":"finished","segment":N,"position":S}`` (N was flushed and played whole;
  only after the ``flush``); ``{"type":"cleared","segment":N,"position":S}`` (a clear
  stopped N after S seconds really played: one per unfinished segment; only after a
  ``clear``); ``{"type":"paused","segment":N|null, "position":S}`` (answer to
  ``pause``); ``{"type":"resumed"}`` (answer to ``resume``). A position counts up to
  the seconds of N the server sent, no further.

Client -> server, binary: microphone audio, 16-bit little-endian signed mono PCM at
the hello's rate, even length, at most one second per message (20-100 ms is usual).
The session gets at most 2 s of it queued; more is dropped (counted).

Server -> client, text:

* ``{"type":"session","conversation":N,"protocol":1,"lead":0.8,
  "pause_on_speech_start":bool}``: first, once the agent is made: how this
  conversation runs. ``?pause_on_speech_start=1`` (or ``0``) on the websocket URL
  asks for that turn option (the default agent honours it; a factory sees the
  query as ``ConversationInfo.query``).
* ``{"type":"segment","segment":N,"sample_rate":R}``: agent audio of segment N
  follows (binary messages, 16-bit LE mono PCM at R Hz) until the next ``segment``.
* ``{"type":"flush","segment":N}``: no more audio for N; report ``finished`` when it
  has all played.
* ``{"type":"clear"}``: stop now, drop all queued audio, answer ``cleared`` for every
  unfinished segment (a segment whose audio never played: position 0).
* ``{"type":"pause"}`` / ``{"type":"resume"}``: stop in place (keep the queue) /
  continue from the same sample. Answer ``paused`` / ``resumed``. Audio may keep
  arriving while paused: queue it. A clear while paused is followed by a resume
  (a clear always ends a pause).
* ``{"type":"event","event":E,...}``, for the page: ``user_state`` and
  ``agent_state`` (``state``), ``transcript`` (``text``, ``final``), ``history``
  (``items``: the last 50 messages, each ``role``, ``text`` (what was heard),
  ``interrupted``), ``false_interruption`` (``resumed``, ``provisional``),
  ``barge_in`` (``action`` "pause" or "clear", and ``onset_ms`` = 0 at the first PCM
  frame of the user's speech, ``decided_ms`` (the session decided), ``sent_ms`` (the
  message left on the socket), ``stopped_ms`` (the player confirmed), and
  ``server_ms``: from the arrival of the microphone frame that decided to the
  message on the socket, the server's own cost).

Back-pressure: the server sends at most ``lead`` (0.8 s) of audio beyond the
position the player last reported, or beyond real time when reports lag, so a
clear drops little and nothing piles up.

Close codes: 1000 normal; 1003 binary before hello; 1007 invalid payload (not JSON,
not an object, unknown type, bad field, a second hello, odd-length PCM, a first
message that is not a hello, a ``cleared`` with no clear sent, a ``finished`` before
the flush was sent); 1008 policy (bad token, origin refused); 1009 message
too big (PCM over one second, text over 4096, anything over 96000 bytes is cut off
by the websocket layer before it is buffered, a frame announcing more is refused
from its header); 1011 server error (the agent could
not start, or failed); 1001 the server is shutting down; 1013 try again later
(``max_conversations`` reached); 4408 no hello in time; 4409 the client stopped
reading (a message could not be sent in 10 s, or 256 kB of events piled up); 4410
nothing received for ``idle_timeout`` (300 s), or no microphone audio for
``mic_timeout`` (60 s) when the agent listens (a page streams its microphone all
along: a websocket that does not would hold a conversation slot, and its STT, for
nothing); 4429 flooding: frames beyond a bucket of 2000 refilled at 250 a
second (``burst_messages``, ``max_messages``; every websocket frame counts, pings
and continuation frames too; a page sends ~60 a second, so it catches up on a 30 s
network stall), a message in more than 64 frames, more than 256 kB a second after
a 4 MB burst, or microphone audio more than 2 s ahead of real time since the
handshake.

Known limits (of trio-websocket 0.12 on wsproto, not worked around): a framing
error the websocket layer finds itself (a reserved opcode or RSV bit, an unmasked
frame, invalid UTF-8 in text, a bad close code, a control frame over 125 bytes or
fragmented, a continuation with nothing to continue) closes the TCP connection
without a close frame (the server counts it as 1002); a browser shows 1006.

Limits and isolation: one conversation per connection, nothing shared between
them but the agent's stateless parts, so behind a load balancer any instance can
take any connection (sticky sessions are not needed; the websocket is the
session). ``max_conversations`` (16) run at once, ``max_connections`` (512) TCP
connections of any kind are held; request heads are read within 10 s and 16 kB,
handshakes complete within 10 s, and a conversation counts only once its handshake
completed. There is no per-address limit: one address may take every connection
slot for up to ``request_timeout`` at a time, or every conversation slot while it
streams audio, so on a public address cap connections per client in front (the
load balancer or a firewall).
A client that breaks the protocol is closed with its code; others go on. A client
that vanishes ends its conversation: its segments finish unconfirmed at the last
position it reported, the session closes, and no task is left.
"""

import importlib.util

if importlib.util.find_spec("trio_websocket") is None or importlib.util.find_spec("h11") is None:
    raise ImportError("trio_playout.web needs trio-websocket and h11: pip install 'trio-playout[web]'")

from ._web_conversation import Agent, AgentFactory, BargeIn, Conversation, ConversationInfo, MicInput
from ._web_protocol import (
    CLOSE_BAD_DATA,
    CLOSE_FLOOD,
    CLOSE_IDLE,
    CLOSE_INVALID,
    CLOSE_NO_HELLO,
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_LATER,
    PROTOCOL_VERSION,
    Hello,
    ProtocolError,
)
from ._web_server import ServerOptions, WebServer
from ._web_sink import Outbox, WebSocketOutput

__all__ = [
    "CLOSE_BAD_DATA",
    "CLOSE_FLOOD",
    "CLOSE_IDLE",
    "CLOSE_INVALID",
    "CLOSE_NO_HELLO",
    "CLOSE_POLICY",
    "CLOSE_SERVER_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_TOO_SLOW",
    "CLOSE_TRY_LATER",
    "PROTOCOL_VERSION",
    "Agent",
    "AgentFactory",
    "BargeIn",
    "Conversation",
    "ConversationInfo",
    "Hello",
    "MicInput",
    "Outbox",
    "ProtocolError",
    "ServerOptions",
    "WebServer",
    "WebSocketOutput",
    "serve",
]


async def serve(factory: AgentFactory, host: str = "127.0.0.1", port: int = 8000, *,
                options: ServerOptions | None = None) -> None:
    """Serve ``factory``'s agent on ``host:port`` until cancelled (see :class:`WebServer`)."""
    await WebServer(factory, options).serve(host, port)


if __name__ == "__main__":
    import sys

    from ._web_cli import main

    sys.exit(main())
