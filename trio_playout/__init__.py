"""trio-playout: the LiveKit Agents playout core on trio's structured concurrency.

Interrupts cancel scopes instead of racing futures, so an interrupted speech is done
as soon as its audio is confirmed stopped: no watchdog, no 5-second stall, nothing
still running after done. See the README for the contracts and an example.
"""

from ._audio import (
    AudioFrame,
    AudioOutput,
    PlaybackResult,
    PlaybackSegment,
)
from ._context import RunContext
from ._events import (
    AgentStateChanged,
    FalseInterruption,
    SessionEvent,
    SpeechCreated,
    UserInputTranscribed,
    UserStateChanged,
    UserTurnCompleted,
)
from ._exceptions import (
    BatcherClosedError,
    CircularWaitError,
    InterruptionNotAllowed,
    InvalidToolArguments,
    ModelNotFoundError,
    PauseNotSupported,
    PlayoutError,
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
    SessionClosedError,
    SinkInUseError,
    SpeechAlreadyInterrupted,
    SpeechEngineError,
    SpeechNotDone,
    ToolDefinitionError,
    ToolError,
    UnknownToolError,
    VoiceOptionsError,
)
from ._history import ChatItem, ChatMessage, FunctionCall, FunctionCallOutput, History
from ._input import STT, VAD, Transcript, VADEvent, VADEventType
from ._models import LLM, TTS, LLMChunk, LLMRequest, SynthesizedAudio, TextDelta, ToolCall, WordTiming
from ._open import open_session
from ._realtime_sink import PlayoutRecord, RealtimeAudioSink
from ._session import InterruptResult, Session
from ._speech import SpeechHandle, SpeechPriority
from ._tools import FunctionTool, function_tool
from ._turn import TurnOptions

__version__ = "0.1.0"

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "VAD",
    "AgentStateChanged",
    "AudioFrame",
    "AudioOutput",
    "BatcherClosedError",
    "ChatItem",
    "ChatMessage",
    "CircularWaitError",
    "FalseInterruption",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "History",
    "InterruptResult",
    "InterruptionNotAllowed",
    "InvalidToolArguments",
    "LLMChunk",
    "LLMRequest",
    "ModelNotFoundError",
    "PauseNotSupported",
    "PlaybackResult",
    "PlaybackSegment",
    "PlayoutError",
    "PlayoutRecord",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "RealtimeAudioSink",
    "RunContext",
    "Session",
    "SessionClosedError",
    "SessionEvent",
    "SinkInUseError",
    "SpeechAlreadyInterrupted",
    "SpeechCreated",
    "SpeechEngineError",
    "SpeechHandle",
    "SpeechNotDone",
    "SpeechPriority",
    "SynthesizedAudio",
    "TextDelta",
    "ToolCall",
    "ToolDefinitionError",
    "ToolError",
    "Transcript",
    "TurnOptions",
    "UnknownToolError",
    "UserInputTranscribed",
    "UserStateChanged",
    "UserTurnCompleted",
    "VADEvent",
    "VADEventType",
    "VoiceOptionsError",
    "WordTiming",
    "function_tool",
    "open_session",
]
