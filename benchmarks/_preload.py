"""Imported once by the runner's fork server, before any configuration is forked.

Only livekit-agents and the plain-asyncio fakes: never ``trio_asyncio`` (it would
patch asyncio in every plain asyncio worker) and never trio or trio_playout (the
stock livekit workers must not load them). Each worker imports what else it needs.
"""

from __future__ import annotations

import livekit.agents
import livekit.agents.voice.transcription.synchronizer
import livekit.rtc

import bridge.testing

__all__ = ["bridge", "livekit"]
