"""The examples/ folder, each run as a real subprocess, and what it printed.

* ``offline_agent.py`` with the real models (Silero, PocketSphinx, espeak-ng), once
  with its generated question and once with ``--wav`` (the demo's recorded question).
* ``openai_agent.py`` and ``livekit_plugins_agent.py`` against tests/openai_server.py,
  run here in the test's own trio loop on the loopback interface, with planned
  answers (a tool call, then the answer); the examples find it through
  ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``, as they would any endpoint.

Real clock (subprocesses and sockets); bounds are generous and only stop a hang.
"""

from __future__ import annotations

import json
import os
import re
import sys
from importlib import resources
from pathlib import Path

import pytest
import trio

import trio_playout as tp
from trio_playout.offline import RuleLLM, get_time

from .openai_server import Chat, OpenAIServer, Speech, Transcribe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUESTION_WAV = Path(str(resources.files("trio_playout"))) / "data" / "user_question.wav"
CHAT, SPEECH, TRANSCRIBE = "/v1/chat/completions", "/v1/audio/speech", "/v1/audio/transcriptions"
BOUND = 90.0  # seconds per run: only against a hang (a first run imports livekit, loads models)


async def run_example(name: str, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
    """Run ``examples/<name>`` to its end; its stdout (its exit status must be 0)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    with trio.fail_after(BOUND):
        done = await trio.run_process([sys.executable, str(EXAMPLES / name), *args], stdin=stdin,
                                      capture_stdout=True, capture_stderr=True, check=False,
                                      env={**environ, **(env or {})})
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"{name} exited with {done.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    return out


@pytest.fixture
async def server(nursery: trio.Nursery) -> OpenAIServer:
    srv = OpenAIServer()
    await nursery.start(srv.serve)
    return srv


def endpoint(server: OpenAIServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-example-test"}


# -- offline ------------------------------------------------------------------------------------------

def _offline_result(out: str) -> dict[str, object]:
    result = json.loads(out.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def _check_offline(out: str) -> tuple[str, list[dict[str, object]]]:
    """What PocketSphinx heard was the user's turn, and the agent answered it by RuleLLM's rule
    for those words (the tool's answer after a tool call); returns the heard text and history."""
    result = _offline_result(out)
    heard, rules, history = result["heard"], result["rules"], result["history"]
    assert isinstance(heard, list) and isinstance(rules, list) and isinstance(history, list)
    assert heard and heard[0].strip(), f"PocketSphinx heard nothing:\n{out}"
    text = heard[0]
    assert history[0] == {"type": "ChatMessage", "role": "user", "text": text, "interrupted": False}
    expected = RuleLLM().reply(tp.LLMRequest([tp.ChatMessage("user", text)], [get_time]))
    assert rules[0] == expected.rule
    said = [i["text"] for i in history if i["type"] == "ChatMessage" and i["role"] == "assistant"]
    if expected.rule == "tool":
        call, output = history[2], history[3]
        assert call["type"] == "FunctionCall" and call["name"] == "get_time"
        assert output["type"] == "FunctionCallOutput" and not output["is_error"]
        assert re.fullmatch(r"It is \d{1,2}:\d\d\.", str(output["output"]))
        assert said == ["Let me check.", output["output"]] and rules == ["tool", "tool_result"]
    elif expected.rule != "time":  # (the time rule's text depends on the clock)
        assert said == [expected.text]
    assert "history (assistant text is what was heard):" in out and f"PocketSphinx heard: {text!r}" in out
    return text, history


async def test_offline_agent_answers_its_generated_question() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pocketsphinx")
    try:
        from trio_playout.espeak import library_path
        library_path()
    except tp.PlayoutError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    out = await run_example("offline_agent.py", "--json", "--tail", "2.5")
    heard, history = _check_offline(out)
    # Measured: PocketSphinx hears espeak-ng's 'What is the time?' (en-us, 150 wpm) right in
    # a fresh process, so the reply goes through the get_time tool.
    assert "time" in heard.split(), f"PocketSphinx heard {heard!r} this time"
    assert [i["type"] for i in history] == ["ChatMessage", "ChatMessage", "FunctionCall",
                                            "FunctionCallOutput", "ChatMessage"]
    assert "user: speaking" in out and "agent: speaking" in out


async def test_offline_agent_answers_a_wav_file() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pocketsphinx")
    try:
        from trio_playout.espeak import library_path
        library_path()
    except tp.PlayoutError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    out = await run_example("offline_agent.py", "--wav", str(QUESTION_WAV), "--json", "--tail", "2.5")
    _check_offline(out)
    assert f"microphone: the WAV file {QUESTION_WAV}" in out


# -- an OpenAI-compatible endpoint ----------------------------------------------------------------------

def _plan_weather(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="Let me check.", tool_calls=[("get_weather", '{"city": "Paris"}')]),
                Chat(text="It is sunny in Paris, 21 degrees."))
    server.plan(SPEECH, Speech(seconds_per_char=0.01), Speech(seconds_per_char=0.01))


def _check_weather_run(server: OpenAIServer, out: str, said: str) -> None:
    assert out.splitlines() == [
        f"user: {said}",
        "assistant: Let me check.",
        'tool call: get_weather({"city": "Paris"})',
        "tool output: It is sunny and 21 degrees in Paris.",
        "assistant: It is sunny in Paris, 21 degrees.",
    ]
    first, second = server.bodies(CHAT)
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][1] == {"role": "user", "content": said}
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert second["messages"][-1]["role"] == "tool"
    assert second["messages"][-1]["content"] == "It is sunny and 21 degrees in Paris."
    assert [b["input"] for b in server.bodies(SPEECH)] == ["Let me check.",
                                                          "It is sunny in Paris, 21 degrees."]
    assert all(r.headers["authorization"] == "Bearer sk-example-test" for r in server.requests)


async def test_openai_agent_typed_turn_with_a_tool(server: OpenAIServer) -> None:
    pytest.importorskip("openai")
    _plan_weather(server)
    out = await run_example("openai_agent.py", "--model", "test-model",
                            stdin=b"What's the weather in Paris?\n\n", env=endpoint(server))
    _check_weather_run(server, out, "What's the weather in Paris?")
    assert server.bodies(CHAT)[0]["model"] == "test-model"


async def test_openai_agent_spoken_turn_with_a_tool(server: OpenAIServer) -> None:
    pytest.importorskip("openai")
    _plan_weather(server)
    server.plan(TRANSCRIBE, Transcribe("What is the weather like in Paris?"))
    out = await run_example("openai_agent.py", "--wav", str(QUESTION_WAV), env=endpoint(server))
    _check_weather_run(server, out, "What is the weather like in Paris?")
    (upload,) = server.bodies(TRANSCRIBE)
    assert upload["model"] == "whisper-1" and upload["file"]["peak"] > 1000  # the WAV's speech


# -- livekit plugins through the bridge ------------------------------------------------------------------

async def test_livekit_plugins_agent_answers_a_spoken_question(server: OpenAIServer) -> None:
    pytest.importorskip("livekit.plugins.openai")
    pytest.importorskip("livekit.plugins.silero")
    pytest.importorskip("trio_asyncio")
    server.plan(TRANSCRIBE, Transcribe("What time is it in Paris?"))
    server.plan(CHAT, Chat(text="Let me check.", tool_calls=[("get_time", '{"city": "Paris"}')]),
                Chat(text="It is 9:41 in Paris."))
    out = await run_example("livekit_plugins_agent.py", "--wav", str(QUESTION_WAV), "--model", "test-model",
                            env=endpoint(server))
    assert "What time is it in Paris?" in out and "It is 9:41 in Paris." in out
    chats = server.bodies(CHAT)
    assert len(chats) == 2 and chats[0]["model"] == "test-model"
    tool = chats[1]["messages"][-1]
    assert tool["role"] == "tool" and tool["content"] == "It is 9:41 in Paris."
    assert [b["input"] for b in server.bodies(SPEECH)] == ["Let me check.", "It is 9:41 in Paris."]
