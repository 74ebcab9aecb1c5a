"""OpenAI-compatible LLM, TTS and STT for trio-native agents (extra ``openai``).

``OpenAILLM`` streams chat completions with tools, ``OpenAITTS`` streams speech as
24 kHz PCM, ``OpenAISTT`` transcribes each user utterance. They talk to any server
that speaks the OpenAI HTTP API: the hosted one, vLLM, Ollama, llama.cpp's server.
``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.

Why the ``openai`` SDK and not httpx directly: the SDK's async client runs on trio
(through anyio and its HTTP client's trio backend; it needs trio >= 0.32, which the
extra pins), it already knows every server quirk of auth headers, base URLs, SSE
framing and multipart uploads, and users can hand us the client they configured
(proxies, organisation, custom headers) with ``client=``. It is also the only way
to stay independent of which HTTP package it sits on (recent SDKs moved from
``httpx`` to ``httpx2``; we import neither). What we keep for ourselves, because the
SDK's defaults do not fit a conversation:

* Retries (the SDK's are off): repeated only while nothing was handed on, so the
  user never hears a sentence twice; ``Retry-After`` honoured up to
  ``max_retry_after`` seconds, beyond that the error is raised at once.
* Timeouts on trio's clock: ``timeout`` bounds the wait for the response and for
  every next chunk, so a stalled stream fails instead of hanging (the SDK's default
  is 10 minutes for the whole request).
* Cancellation reaches the wire: an interrupt cancels the read, and the response is
  closed in a shielded, bounded ``finally``, which closes its connection (a body
  read half way cannot go back to the pool).
* Typed errors: everything becomes a :class:`~trio_playout.ProviderError`
  (connection, timeout, rate limit, response), including what the SDK leaves raw
  (a malformed SSE line is a ``json.JSONDecodeError`` there).

How each provider handles what the API does not give:

* ``OpenAILLM``: tool calls are assembled by ``index`` and handed on when the
  stream ends; the history (function calls and outputs, interrupted assistant
  messages as heard) is mapped as :func:`history_to_messages` describes.
* ``OpenAITTS``: the speech endpoint returns no word timings, so they are estimated
  proportionally to characters: the heard text after an interrupt is an estimate,
  off by a word or two in a long sentence.
* ``OpenAISTT``: the STT sees only frames, so it cuts utterances itself by energy
  (``threshold_db``, ``min_speech``, ``end_silence``, ``pre_roll``) and uploads each
  as a WAV; a failed utterance is logged and skipped, never fatal to the session.

Each client owned by a provider is closed by ``await provider.aclose()`` (or
``async with``); a client passed with ``client=`` is left to its owner.
"""

from __future__ import annotations

from ._openai_common import RetryPolicy
from ._openai_llm import OpenAILLM, history_to_messages, tool_schemas
from ._openai_stt import OpenAISTT
from ._openai_tts import OpenAITTS

__all__ = ["OpenAILLM", "OpenAISTT", "OpenAITTS", "RetryPolicy", "history_to_messages", "tool_schemas"]
