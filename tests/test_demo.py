"""The demo (the README's main job) runs and tells the story it promises.

Two scenarios: the voice one (the default: the real Silero VAD hears a recorded user
barge in) and the tool-preamble one of livekit/agents #5359 (``--scenario tools``).

It runs on trio's clock, so every test here runs it in virtual time: in-process,
through ``run_demo`` (inside a trio test with ``autojump_clock``) or through
``main(argv, clock=MockClock(...))``, the same entry point ``python -m
trio_playout.demo`` uses, for every option ``--help`` offers at its edges.
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import trio
import trio.testing

import trio_playout as tp
from trio_playout import _demo_data, demo

try:
    from trio_playout import _demo_voice
except ImportError:  # pragma: no cover - only without the vad extra (numpy)
    _demo_voice = None  # type: ignore[assignment]


@pytest.mark.parametrize("clear_delay", [0.15, math.inf])
async def test_demo_timeline(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str], clear_delay: float
) -> None:
    await demo.run_demo(barge_in_after=1.0, clear_delay=clear_delay, sink_grace=2.0)
    out = capsys.readouterr().out
    assert out.count("tool got the interrupt once") == 1
    waited = "2000.000" if clear_delay == math.inf else "150.000"
    assert f"wait_for_playout() returned ({waited} ms after the interrupt)" in out
    if clear_delay == math.inf:
        # the deaf sink's 0.2 s buffer ran out long before the 2 s grace did
        assert "never confirmed the stop of the preamble, but its buffered audio had run out" in out
        assert "handle.sink_timed_out is True" in out
    else:
        assert "the sink confirmed the stop of the preamble 0.000 ms before that" in out
        assert "sink_timed_out" not in out
    assert "(interrupted)" in out and "[call_1, interrupted]" in out
    assert "'London is cloudy today.'" in out


async def test_barge_in_before_the_first_word(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # regression: IndexError at sink.records[0] (no audio had been played yet)
    await demo.run_demo(barge_in_after=0.0, clear_delay=0.15, sink_grace=2.0)
    out = capsys.readouterr().out
    assert "wait_for_playout() returned (0.000 ms after the interrupt)" in out
    assert "no audio was playing at that moment" in out
    assert "tool get_weather" not in out  # the LLM had not answered: the tool never started
    history = out.split("history:")[1]
    assert "assistant 'Sure" not in history  # nothing heard, no message
    assert "'London is cloudy today.'" in history


async def test_barge_in_during_the_answer_names_the_answer(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    # regression: the line described the preamble's record (3.50 s heard) although the
    # clear stopped the answer after the tool
    await demo.run_demo(barge_in_after=5.0, clear_delay=0.15, sink_grace=2.0)
    out = capsys.readouterr().out
    assert "3.50 s" not in out
    assert "the sink confirmed the stop of the answer 0.000 ms before that; 0.55 s of it were heard" in out
    assert "tool: the weather service answered" in out
    assert "tool got the interrupt once" not in out  # the tool had already returned
    assert "assistant 'Right now it'  (interrupted)" in out


async def test_barge_in_after_the_reply_interrupts_nothing(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = trio.current_time()
    await demo.run_demo(barge_in_after=3600.0, clear_delay=0.15, sink_grace=2.0)
    out = capsys.readouterr().out
    assert "has nothing to interrupt" in out
    assert "user barges in" not in out
    assert "'Right now it is sunny, 21 C in Paris.'" in out
    assert trio.current_time() - t0 < 60  # it did not sit out the hour


# Every option --help offers, at its edges: 0, the default, and the far end.
BARGE_IN = ["0", "1.2", "4", "5", "8", "1e6"]  # before audio, preamble, tool, answer, after
CLEAR = ["0", "0.15", "inf"]
GRACE = ["0", "2", "1e6"]


@pytest.mark.parametrize(("barge", "clear", "grace"), list(itertools.product(BARGE_IN, CLEAR, GRACE)))
def test_every_option_combination_runs(
    capsys: pytest.CaptureFixture[str], barge: str, clear: str, grace: str
) -> None:
    argv = ["--scenario", "tools", "--barge-in-after", barge, "--clear-delay", clear, "--sink-grace", grace]
    assert demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0)) == 0
    out = capsys.readouterr().out
    returned = out.count("wait_for_playout() returned")
    nothing = out.count("has nothing to interrupt")
    assert returned + nothing == 1, out
    assert "second reply played out" in out
    assert "'London is cloudy today.'" in out.split("history:")[1]
    if "STILL PLAYING" in out:
        # an early return is only ever the grace running out, and it is said so
        assert "handle.sink_timed_out is True" in out, out
    if clear == "0":
        assert "sink_timed_out" not in out, out


def test_tools_scenario_default_options_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--scenario", "tools"], clock=trio.testing.MockClock(autojump_threshold=0)) == 0
    out = capsys.readouterr().out
    assert "wait_for_playout() returned (150.000 ms after the interrupt)" in out
    assert "https://github.com/livekit/agents/issues/5359" in out


def test_help_runs_and_names_no_internal_documents(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "https://github.com/livekit/agents/issues/5359" in out
    for hidden in ("DESIGN", "issue 4", "section 3"):
        assert hidden not in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--sink-grace", "inf"],
        ["--sink-grace", "-1"],
        ["--sink-grace", "nan"],
        ["--clear-delay", "-0.1"],
        ["--clear-delay", "nan"],
        ["--scenario", "tools", "--barge-in-after", "-1"],
        ["--scenario", "tools", "--barge-in-after", "nan"],
        ["--scenario", "tools", "--barge-in-after", "inf"],
        ["--scenario", "tools", "--barge-in-after", "soon"],
        ["--scenario", "tools", "--sink-grace", "inf"],
    ],
)
def test_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0))
    assert exc.value.code == 2
    assert "trio-playout demo" not in capsys.readouterr().out  # it never started


# --- the voice scenario (the default): the real Silero VAD on the user's recorded voice -------

needs_vad = pytest.mark.skipif(demo._vad_missing() is not None, reason="the vad extra is not installed")
VOICES = ["recorded", pytest.param("espeak", marks=pytest.mark.skipif(
    not _demo_data.espeak_available(), reason="espeak-ng is not installed"))]


def _clip(story: _demo_voice.VoiceDemo, label: str) -> float:
    """When the mic began to play the clip whose label starts with ``label`` (s since the start)."""
    placed = [p for p in story.clips if p.cue.label.startswith(label)]
    assert len(placed) == 1, story.clips
    assert not placed[0].forced  # the user reacted to what they heard, not to a fallback
    return placed[0].start - story.t0


def _entries(story: _demo_voice.VoiceDemo, kind: str) -> list[_demo_voice.Entry]:
    return [e for e in story.timeline if e.kind == kind]


def _position(entry: _demo_voice.Entry) -> float:
    m = re.search(r"the Paris reply at ([\d.]+) s", entry.text)
    assert m, entry.text
    return float(m.group(1))


def _read_wav(path: Path) -> tuple[int, int, bytes]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), w.getnframes(), w.readframes(w.getnframes())


def _rms(data: bytes, rate: int, a: float, b: float) -> float:
    samples = memoryview(data).cast("h")[max(0, round(a * rate)):round(b * rate)]
    return math.sqrt(sum(x * x for x in samples) / max(1, len(samples)))


@needs_vad
@pytest.mark.parametrize("voice", VOICES)
async def test_voice_story_in_virtual_time(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str], tmp_path: Path, voice: str
) -> None:
    heard_file = tmp_path / "heard.wav"
    story = await _demo_voice.voice_main(_demo_voice.VoiceOptions(voice=voice, heard=heard_file))
    out = capsys.readouterr().out
    assert story.finished and story.voices == voice
    assert "STT:            SCRIPTED" in out  # the scripted STT is said to be one
    paris, london = _demo_data.REPLY_PARIS.text, _demo_data.REPLY_LONDON.text

    # the noise: the VAD hears no speech in it and nothing pauses before the 'hmm'
    noise, hmm, barge = _clip(story, "noise"), _clip(story, "user says 'hmm'"), _clip(story, "user barges in")
    hum = _clip(story, "user says 'hmmm'")
    assert [e for e in story.timeline if e.kind in ("vad_start", "pause") and noise <= e.t < hmm] == []
    assert "the VAD heard no speech in it; nothing paused" in out

    # the short 'hmm': the VAD hears it, but 0.3 s of voice is under min_interruption_duration
    assert any(hmm < e.t < hum for e in _entries(story, "vad_start"))
    (voiced,) = [v for t, v in story.vad_ends if hmm < t < hum]
    assert 0.2 <= voiced < 0.4
    assert [e for e in story.timeline if e.kind in ("pause", "false_interruption") and hmm <= e.t < hum] == []
    assert f"{voiced:.2f} s of voice by the VAD, under min_interruption_duration (0.5 s): nothing paused" \
        in out

    # the long 'hmmm': paused once the user has spoken min_interruption_duration (0.5 s), not before
    pauses, resumes = _entries(story, "pause"), _entries(story, "resume")
    assert len(pauses) == 2 and len(resumes) == 1
    vad_start = next(e for e in _entries(story, "vad_start") if e.t >= hum)
    assert hum < vad_start.t < pauses[0].t
    assert 0.5 - 0.05 <= pauses[0].t - hum <= 0.5 + 0.15
    # no words: it resumes false_interruption_timeout after the end of speech, where it paused
    vad_end = next(e for e in _entries(story, "vad_end") if e.t >= pauses[0].t)
    assert resumes[0].t == pytest.approx(vad_end.t + 2.0, abs=0.021)
    assert _position(resumes[0]) == _position(pauses[0]) > 0
    assert story.false_interruptions == [("the Paris reply", True, False)]
    assert resumes[0].t < barge < pauses[1].t

    # the barge-in: paused at 0.5 s of voice (the pause after "Wait," does not count), its
    # words interrupt; heard text cut at the pause
    assert 0.5 - 0.05 <= pauses[1].t - barge <= 0.5 + 0.25
    words = next(e for e in _entries(story, "stt_final") if e.t >= barge)
    (interrupt,) = _entries(story, "interrupt")
    assert pauses[1].t < interrupt.t == pytest.approx(words.t, abs=1e-3)
    assert story.interrupts == [("the Paris reply", "user_turn")]
    user1, cut, user2, answer = story.history
    assert (user1.role, user1.text) == ("user", _demo_data.QUESTION.words)
    assert isinstance(cut, tp.ChatMessage) and cut.role == "assistant" and cut.interrupted
    # nothing skipped: what was heard is the start of the reply, past where the 'hmmm' paused it
    assert paris.startswith(cut.text) and len(cut.text) < len(paris)
    assert paris[len(cut.text)] in " ,"  # cut after a whole word
    rec = next(r for r in story.records if story.labels[r.segment_id] == "the Paris reply")
    assert rec.position == pytest.approx(_position(pauses[1]), abs=0.01)
    assert rec.position > _position(pauses[0])
    if voice == "recorded":  # (a live TTS under a MockClock may leave gaps in the audio)
        paused = sum((b if b is not None else rec.stopped_at) - a for a, b in rec.pauses)
        assert rec.stopped_at is not None
        assert rec.position == pytest.approx(rec.stopped_at - rec.started_at - paused, abs=1e-6)

    # the next turn: exactly one reply, heard in full
    assert story.user_turns == [_demo_data.QUESTION.words, _demo_data.BARGE_IN.words]
    assert (user2.role, user2.text) == ("user", _demo_data.BARGE_IN.words)
    assert isinstance(answer, tp.ChatMessage) and (answer.text, answer.interrupted) == (london, False)
    assert len(_entries(story, "speech")) == 2 and out.count(f"assistant {london!r}") == 1
    turn2 = _entries(story, "user_turn")[1]
    # the endpoint counts from the end of the voice: Silero's end of speech already waited
    # its 0.58 s of silence (> min_endpointing_delay), so each turn completes at the VAD's
    # end of speech, not 0.5 s after it (the STT's finals came before)
    turns, ends = _entries(story, "user_turn"), _entries(story, "vad_end")
    assert len(turns) == 2
    for turn in turns:
        end = max(e.t for e in ends if e.t <= turn.t)
        assert turn.t - end < 0.05
    first = [e for e in _entries(story, "first_frame") if e.t >= turn2.t]
    assert len(first) == 1 and "London" in first[0].text

    # --heard: a valid WAV, as long as what was played, silent while paused and after the cut
    rate, frames, data = _read_wav(heard_file)
    assert rate == 16000 and frames / rate == pytest.approx(story.heard_seconds, abs=1e-9)
    end = max(r.stopped_at for r in story.records if r.stopped_at is not None) - story.t0
    # within one 20 ms frame: once in CI the file ended a frame before the last stop
    # (16.978 vs 16.998 s), a flake noted for a closer look
    assert story.heard_seconds == pytest.approx(end, abs=0.02 + 2 / rate)
    played = sum(r.position or 0 for r in story.records)
    assert story.heard_agent_seconds == pytest.approx(played, abs=2 / rate)
    assert _rms(data, rate, pauses[0].t + 0.02, resumes[0].t - 0.02) == 0  # the false interruption's pause
    assert _rms(data, rate, pauses[1].t + 0.02, first[0].t - 0.02) == 0  # cut, until the answer
    assert _rms(data, rate, first[0].t, first[0].t + 1.0) > 300  # the answer is heard
    assert f"wrote {heard_file}" in out


@needs_vad
async def test_pause_on_speech_start_pauses_at_the_vad_start(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = _demo_voice.VoiceOptions(voice="recorded", pause_on_speech_start=True)
    story = await _demo_voice.voice_main(opts)
    out = capsys.readouterr().out
    assert "at the VAD's start of speech (--pause-on-speech-start)" in out
    for clip in ("user says 'hmm'", "user says 'hmmm'", "user barges in"):
        at = _clip(story, clip)
        start = next(e for e in _entries(story, "vad_start") if e.t >= at)
        pause = next(e for e in _entries(story, "pause") if e.t >= at)
        assert pause.t == start.t and pause.t - at < 0.25  # not 0.5 s into the user's speech
    # the short 'hmm' pauses for at most 0.4 s: resumed as soon as its voice stopped,
    # long before the VAD's end of speech (0.55 s of silence later)
    hmm, hum = _clip(story, "user says 'hmm'"), _clip(story, "user says 'hmmm'")
    (pause,) = [e for e in _entries(story, "pause") if hmm <= e.t < hum]
    (resume,) = [e for e in _entries(story, "resume") if hmm <= e.t < hum]
    end = next(e for e in _entries(story, "vad_end") if e.t >= hmm)
    assert 0 < resume.t - pause.t <= 0.4 and resume.t < end.t - 0.4
    assert _position(resume) == _position(pause)
    assert re.search(r"paused 0\.[0-3]\d s in all", out)
    # the 'hmmm' reaches 0.5 s of voice: an ordinary pause, resumed after the timeout
    # (the barge-in may resume between its words before it counts: provisional ones only)
    paris = "the Paris reply"
    assert story.false_interruptions[:2] == [(paris, True, True), (paris, True, False)]
    assert all(provisional for _, _, provisional in story.false_interruptions[2:])
    assert story.interrupts == [("the Paris reply", "user_turn")]
    assert story.user_turns == [_demo_data.QUESTION.words, _demo_data.BARGE_IN.words]


@needs_vad
def test_heard_with_the_mic_mixed_in(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    heard_file = tmp_path / "heard.wav"
    argv = ["--voice", "recorded", "--heard", str(heard_file), "--heard-mic"]
    assert demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0)) == 0
    out = capsys.readouterr().out
    assert "mixed with the user's mic" in out
    rate, _frames, data = _read_wav(heard_file)
    # the question, before the agent said anything, is in the file: the user's voice
    assert _rms(data, rate, 0.3, 1.5) > 300
    assert _rms(data, rate, 0.0, 0.25) == 0


# Every option of the voice scenario at its edges (recorded voices: what the README's one-line
# command gets without the espeak extra).
PAUSE_EARLY = [[], ["--pause-on-speech-start"]]
CLEAR_V = ["0", "0.15", "inf"]
TIMEOUT = ["0", "2", "1e6"]


@needs_vad
@pytest.mark.parametrize(("early", "clear", "timeout"),
                         list(itertools.product(PAUSE_EARLY, CLEAR_V, TIMEOUT)))
def test_every_voice_option_combination_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, early: list[str], clear: str, timeout: str
) -> None:
    heard_file = tmp_path / "h.wav"
    argv = ["--voice", "recorded", *early, "--clear-delay", clear, "--false-interruption-timeout", timeout,
            "--heard", str(heard_file)]
    assert demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0)) == 0
    out = capsys.readouterr().out
    history = out.split("history (assistant text is what was heard):")[1]
    assert "the story did not reach" not in out
    assert history.count(f"user      {_demo_data.BARGE_IN.words!r}") == 1  # one turn, one answer
    assert history.count("assistant 'London is cloudy today") == 1
    assert heard_file.stat().st_size > 44
    if timeout != "1e6":
        assert "FALSE INTERRUPTION: no words came" in out and "(resumed=True)" in out
    else:  # never resumed after the timeout: the barge-in's words end the paused reply
        assert "FALSE INTERRUPTION: no words came" not in out and "INTERRUPTED (source 'user_turn')" in out
    # with --pause-on-speech-start the short 'hmm' is a provisional false interruption
    assert ("FALSE INTERRUPTION (provisional)" in out) == bool(early)


@needs_vad
@pytest.mark.parametrize(("clear", "grace"), list(itertools.product(["0", "inf"], ["0", "1e6"])))
def test_voice_sink_grace_edges_run(capsys: pytest.CaptureFixture[str], clear: str, grace: str) -> None:
    argv = ["--voice", "recorded", "--clear-delay", clear, "--sink-grace", grace]
    assert demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0)) == 0
    out = capsys.readouterr().out
    assert out.count("USER TURN: 'Wait, what about London?'") == 1
    if (clear, grace) == ("inf", "1e6"):
        # a sink that never confirms, waited for without end: the turn waits behind the
        # interrupted reply, and the demo says so instead of hanging silently
        assert "the story did not finish within 60 s; 1 speech(es) still wait for the sink" in out
        assert "the story did not reach" in out
    else:
        assert "the story did not reach" not in out


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--barge-in-after", "1"], "--barge-in-after belongs to the tools scenario"),
        (["--scenario", "tools", "--pause-on-speech-start"], "--pause-on-speech-start belongs to the voice"),
        (["--scenario", "tools", "--heard", "x.wav"], "--heard belongs to the voice"),
        (["--scenario", "tools", "--voice", "recorded"], "--voice belongs to the voice"),
        (["--scenario", "tools", "--false-interruption-timeout", "1"], "belongs to the voice"),
        (["--heard-mic"], "--heard-mic needs --heard"),
        (["--heard", "."], "is a directory"),
        (["--heard", "/nonexistent-dir/x.wav"], "not a writable directory"),
        (["--false-interruption-timeout", "-1"], "must be finite and >= 0"),
        (["--false-interruption-timeout", "nan"], "must be finite and >= 0"),
        (["--false-interruption-timeout", "inf"], "must be finite and >= 0"),
        (["--voice", "festival"], "invalid choice"),
        (["--scenario", "music"], "invalid choice"),
        (["--pause-on-speech-start", "yes"], "unrecognized arguments"),
    ],
)
def test_voice_options_reject_bad_combinations(
    capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0))
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert complaint in captured.err and "trio-playout demo" not in captured.out


def test_voice_espeak_without_the_engine_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_demo_data, "espeak_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        demo.main(["--voice", "espeak"])
    assert exc.value.code == 2
    assert "pip install 'trio-playout[espeak]'" in capsys.readouterr().err


def test_voice_without_the_vad_extra_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "_vad_missing", lambda: "No module named 'onnxruntime'")
    assert demo.main([]) == 2
    err = capsys.readouterr().err
    assert "python -m pip install -e '.[demo]'" in err and "--scenario tools" in err


def test_help_in_a_subprocess_lists_both_scenarios() -> None:
    proc = subprocess.run([sys.executable, "-m", "trio_playout.demo", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--scenario", "--heard", "--heard-mic", "--pause-on-speech-start", "--voice",
                 "--false-interruption-timeout", "--barge-in-after", "--clear-delay", "--sink-grace"):
        assert flag in proc.stdout
    assert "https://github.com/livekit/agents/issues/5359" in proc.stdout


async def test_recorded_tts_plays_the_recordings_with_their_word_timings() -> None:
    voices = _demo_data.recorded_voices()
    text = _demo_data.REPLY_PARIS.text
    chunks = [c async for c in voices.tts.synthesize(" " + text)]
    audio = sum(c.frame.duration for c in chunks)
    words = [w for c in chunks for w in c.words]
    assert audio == pytest.approx(7.437, abs=0.5)
    # espeak's word events cover every word of the text once, in order ("with the" may be one)
    assert " ".join((" " + text)[w.start_char:w.end_char] for w in words).split() == text.split()
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(words))
    assert words[-1].end <= audio + 1e-9
    # a text it has no recording of: silence with timings, never a crash
    other = [c async for c in voices.tts.synthesize("Something else entirely.")]
    assert sum(len(c.words) for c in other) == 3 and not any(any(c.frame.data) for c in other)


def test_recorded_data_is_small_and_shipped() -> None:
    folder = ROOT / "trio_playout" / "data"
    files = sorted(p.name for p in folder.iterdir())
    assert "script.json" in files and sum((folder / f).stat().st_size for f in files) < 1_000_000
    for name in files:
        if name.endswith(".wav"):
            rate, frames, _ = _read_wav(folder / name)
            assert rate == 16000 and frames > 0
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"data/*.wav", "data/*.json"' in pyproject and 'demo = [\n    "trio-playout[vad]",' in pyproject


# --- .ci/run: the README's test command in a fresh environment, cleaned up after ----------

ROOT = Path(__file__).resolve().parents[1]

# A stand-in interpreter: ``-m venv DIR`` makes DIR/bin/activate and DIR/bin/python (this
# script again); any other call is logged and exits with $FAKE_RC. So .ci/run's own logic
# (interpreter choice, clean-up, exit status) runs for real without installing anything.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    echo "venv by $(basename "$0")" >> "$FAKE_LOG"
    mkdir -p "$3/bin"
    printf 'PATH="%s/bin:$PATH"\\n' "$3" > "$3/bin/activate"
    cp "$0" "$3/bin/python"
    exit 0
fi
if [ "$1" = "--version" ]; then echo "Python 0.fake"; exit 0; fi
echo "$*" >> "$FAKE_LOG"
exit "${FAKE_RC:-0}"
"""


def _run_ci(tmp_path: Path, rc: int, python: str | None) -> tuple[int, str, list[Path]]:
    bin_dir, scratch, log = tmp_path / "bin", tmp_path / "scratch", tmp_path / "log"
    bin_dir.mkdir()
    scratch.mkdir()
    for name in ("python3", "python3.10-fake"):
        exe = bin_dir / name
        exe.write_text(FAKE_PYTHON)
        exe.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(scratch), "FAKE_LOG": str(log),
        "FAKE_RC": str(rc), "HOME": str(tmp_path),
    }
    if python is not None:
        env["PYTHON"] = python
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, log.read_text() if log.exists() else "", list(scratch.iterdir())


@pytest.mark.parametrize("rc", [0, 3])
def test_ci_run_cleans_up_its_virtual_environment(tmp_path: Path, rc: int) -> None:
    code, log, left = _run_ci(tmp_path, rc, None)
    assert left == []  # regression: the 600 MB venv stayed in $TMPDIR on every run
    assert (code == 0) is (rc == 0)
    assert "venv by python3" in log


def test_ci_run_takes_the_interpreter_from_python_and_runs_the_readme_command(tmp_path: Path) -> None:
    code, log, left = _run_ci(tmp_path, 0, "python3.10-fake")
    assert code == 0 and left == []
    assert "venv by python3.10-fake" in log
    lines = log.splitlines()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m pip install -e '.[test]' && python -m pytest" in readme
    assert lines[-2:] == ["-m pip install -e .[test]", "-m pytest"]


def test_ci_run_refuses_a_missing_interpreter(tmp_path: Path) -> None:
    code, log, left = _run_ci(tmp_path, 0, "python3.99-nowhere")
    assert code != 0 and log == "" and left == []


# --- what the README and the package tell users ---------------------------------------------


def test_readme_names_no_internal_documents_and_links_upstream() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for hidden in ("DESIGN", "issue 4", "section 3"):
        assert hidden not in readme
    numbers = re.findall(r"#(5359|5425|5700|7249)\b", readme)
    assert "5359" in numbers and "5700" in numbers
    for m in re.finditer(r"#(5359|5425|5700|7249)\b", readme):
        linked = re.match(r"\]\(https://github\.com/livekit/agents/(issues|pull)/(\d+)\)",
                          readme[m.end():])
        assert readme[m.start() - 1] == "[" and linked and linked.group(2) == m.group(1), (
            readme[m.start() - 40:m.end() + 40]
        )
    assert "bench-results/" in readme  # where python -m benchmarks writes its output
    # the two set-up commands, each one line: the demo's installs what its voice scenario needs
    assert re.search(r"(python -m )?pip install -e (\.|'\.\[demo\]') && python -m trio_playout\.demo", readme)
    assert "python -m pip install -e '.[test]' && python -m pytest" in readme


def test_license_file_is_the_one_pyproject_names() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = \{ text = "Apache-2.0" \}$', pyproject, re.MULTILINE)
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
