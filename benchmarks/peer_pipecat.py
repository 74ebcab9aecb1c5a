"""The ``pipecat`` implementation of the voice-peer benchmark (issue 11: S8, S9, S10).

    python -m benchmarks.peer_pipecat --spec SPEC.json --out OUT.json

One pipecat-ai pipeline per trial, built the way a pipecat voice bot is:

    WavMic -> ScriptedSTT -> user aggregator (SileroVADAnalyzer, turn strategies)
           -> ScriptedLLM -> ToneTTS -> SpeakerOut -> assistant aggregator

(parts in :mod:`benchmarks._pipecat_parts`). The user's WAV goes in as
``InputAudioRawFrame`` s in real time (frame at wav time ``a`` fed at ``w0 + a``);
the agent's speech is an ``LLMRunFrame`` queued at ``w0 + speak_at``. Interruptions
are pipecat's own: VAD start -> ``VADUserTurnStartStrategy`` -> the aggregator
broadcasts an ``InterruptionFrame``; the output transport drops its queue and
the speaker is cleared. Pipecat has no pause and no resume, so a false
interruption loses the rest of the agent's reply; pipecat's answer to a turn that
ends without a transcript is ``EmptyUserTurnConfig`` (on by default): it adds a
developer message and runs the LLM once to ask the user to repeat.

How the spec's settings map onto pipecat (``settings.pipecat`` in OUT.json) and
what pipecat forces differently (``settings.forced_differences``) are built in
:func:`pipecat_settings`. Every trial runs in its own event loop; a failing trial
records its error and the next one runs; OUT.json is always written.

``--min-words N`` (outside the contract, for comparison) swaps the VAD start
strategy for pipecat's ``MinWordsUserTurnStartStrategy``: while the bot speaks, the
user's turn starts (and interrupts) only once the transcript has N words, so a
wordless burst never interrupts but a barge-in waits for the STT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import json
import platform
import sys
import time
import traceback
import wave
from pathlib import Path
from typing import Any

from ._pipecat_record import SinkFacts, Speaker, analyse, normalise_history

FRAME_IN = 320  # 20 ms at 16 kHz
RATE_IN = 16000
RATE_OUT = 24000


def read_wav(path: str) -> bytes:
    with wave.open(path, "rb") as w:
        if w.getframerate() != RATE_IN or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono int16")
        return w.readframes(w.getnframes())


def pipecat_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The pipecat parameters for the spec's settings, and the differences pipecat forces."""
    vad = settings.get("vad", {})
    threshold = float(vad.get("activation_threshold", 0.5))
    min_speech = float(vad.get("min_speech_duration", 0.05))
    min_silence = float(vad.get("min_silence_duration", 0.55))
    min_int = float(settings.get("min_interruption_duration", 0.5))
    fit = float(settings.get("false_interruption_timeout", 2.0))
    start_secs = max(min_speech, min_int)
    min_words = int(settings.get("pipecat_min_words") or 0)
    mapped = {
        "VADParams": {"confidence": threshold, "start_secs": start_secs,
                      "stop_secs": min_silence, "min_volume": 0.0},
        "vad_windows": {"start": round(start_secs / 0.032), "stop": round(min_silence / 0.032)},
        "user_turn_strategies": {"start": ([f"MinWordsUserTurnStartStrategy(min_words={min_words})"]
                                           if min_words else
                                           ["VADUserTurnStartStrategy",
                                            "TranscriptionUserTurnStartStrategy"]),
                                 "stop": ["SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.5)"]},
        "user_turn_stop_timeout": fit,
        "empty_user_turn": "EmptyUserTurnConfig() (default: an empty turn that interrupted the bot "
                           "runs the LLM once with a developer prompt to ask the user to repeat)",
        "audio_out_10ms_chunks": 2,
        "tts": "HTTP-style (push_start_frame/push_stop_frames, SENTENCE aggregation, text to "
               "the context after each sentence's audio)",
    }
    forced = [
        "no min_interruption_duration: pipecat's only duration gate is VADParams.start_secs, so "
        f"start_secs = max(min_speech_duration, min_interruption_duration) = {start_secs} s; it "
        "gates every user-turn start (not only interruptions) and a single window below the "
        "threshold restarts the count (livekit adds up speech duration across hysteresis)",
        "no pause and no resume: an interruption clears the output (stop_kind 'clear'); a false "
        "interruption loses the rest of the reply (reported in 'skipped')",
        "no false_interruption_timeout: mapped to LLMUserAggregatorParams.user_turn_stop_timeout "
        f"= {fit} s, after which a turn without transcript ends and EmptyUserTurnConfig "
        "re-prompts the LLM (a new reply asking the user to repeat, not a resume)",
        "VAD: one threshold for start and continuation (no deactivation hysteresis), no "
        "probability smoothing, the model state is reset every ~2 s of quiet audio; "
        "min_volume set to 0 (pipecat's default 0.6 volume gate has no peer equivalent)",
        "VAD windows: start after round(start_secs/0.032) windows, end after "
        "round(stop_secs/0.032) windows (0.55 s -> 17 windows = 0.544 s)",
        "endpointing: SpeechTimeoutUserTurnStopStrategy user_speech_timeout 0.5 s after the VAD "
        "stop (livekit's min_endpointing_delay default); pipecat's default stop strategy is the "
        "smart-turn model (LocalSmartTurnAnalyzerV3), not used",
        "VAD runs in pipecat's one-thread executor per analyzer (a thread hop per 20 ms frame)",
    ]
    if min_words:
        forced.insert(0, f"variant --min-words {min_words}: the user's turn (and the interruption) "
                         "starts only once the transcript has that many words while the bot speaks "
                         "(1 otherwise); the VAD only ends turns")
    return mapped, forced


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("pipecat-ai", "onnxruntime", "numpy", "loguru"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def model_check() -> dict[str, Any]:
    """Whether pipecat's bundled silero_vad.onnx is byte-identical to the one the peers use."""
    info: dict[str, Any] = {}
    try:
        import pipecat.audio.vad.data as data

        ours = Path(data.__path__[0]) / "silero_vad.onnx"
        info["pipecat_model_sha256"] = hashlib.sha256(ours.read_bytes()).hexdigest()
        from trio_playout.silero import find_model

        theirs = find_model()
        info["peer_model_sha256"] = hashlib.sha256(theirs.read_bytes()).hexdigest()
        info["same_model"] = info["pipecat_model_sha256"] == info["peer_model_sha256"]
    except Exception as exc:  # the check is informative only
        info["error"] = f"{type(exc).__name__}: {exc}"
    return info


async def _run_pipeline(
    spec: dict[str, Any], trial: dict[str, Any], pcm: bytes
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import InputAudioRawFrame, LLMRunFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.transports.base_transport import TransportParams
    from pipecat.turns.user_start import (
        BaseUserTurnStartStrategy,
        MinWordsUserTurnStartStrategy,
        TranscriptionUserTurnStartStrategy,
        VADUserTurnStartStrategy,
    )
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.workers.runner import WorkerRunner

    from ._pipecat_parts import (
        ScriptedLLM,
        ScriptedSTT,
        SpeakerOut,
        StampedSilero,
        Stamps,
        ToneTTS,
        WavMic,
    )

    settings = spec["settings"]
    mapped, _ = pipecat_settings(settings)
    vp = mapped["VADParams"]
    threshold = float(vp["confidence"])
    stamps = Stamps()
    speaker = Speaker()
    in_ready, out_ready = asyncio.Event(), asyncio.Event()
    speak_at = trial.get("speak_at")
    transcript = trial.get("transcript")
    end = float(trial.get("end") or 0.0)
    duration = float(trial["duration"])

    vad = StampedSilero(params=VADParams(**vp), stamps=stamps)
    min_words = int(settings.get("pipecat_min_words") or 0)
    start: list[BaseUserTurnStartStrategy] = (
        [MinWordsUserTurnStartStrategy(min_words=min_words)] if min_words
        else [VADUserTurnStartStrategy(), TranscriptionUserTurnStartStrategy()])
    mic = WavMic(TransportParams(audio_in_enabled=True, audio_in_sample_rate=RATE_IN), in_ready)
    stt = ScriptedSTT(text=transcript, at=end + 0.2 if transcript else None, stamps=stamps)
    context = LLMContext(messages=[{"role": "system", "content": "You are the benchmark agent."}])
    pair = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            user_turn_strategies=UserTurnStrategies(
                start=start,
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.5)],
            ),
            user_turn_stop_timeout=float(mapped["user_turn_stop_timeout"]),
        ),
    )
    llm = ScriptedLLM(first=spec.get("agent_text") if speak_at is not None else None, stamps=stamps)
    tts = ToneTTS(seconds_per_char=float(spec.get("agent_seconds_per_char", 0.06)), stamps=stamps,
                  rate=RATE_OUT)
    out = SpeakerOut(
        TransportParams(audio_out_enabled=True, audio_out_sample_rate=RATE_OUT,
                        audio_out_10ms_chunks=2, audio_out_end_silence_secs=0),
        speaker, stamps, out_ready)
    pipeline = Pipeline([mic, stt, pair.user(), llm, tts, out, pair.assistant()])
    task = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE_IN, audio_out_sample_rate=RATE_OUT),
        idle_timeout_secs=None, enable_rtvi=False, enable_turn_tracking=False,
        check_dangling_tasks=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    running = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(asyncio.gather(in_ready.wait(), out_ready.wait()), 10.0)
        await asyncio.sleep(0.2)  # StartFrame reaches every processor
        n_frames = round(duration / 0.02)
        silence = bytes(FRAME_IN * 2)
        w0 = time.perf_counter()
        stamps.w0 = w0
        spoke = speak_at is None
        for i in range(n_frames):
            a = i * 0.02
            if speak_at is not None and not spoke and a >= float(speak_at):
                await task.queue_frame(LLMRunFrame())
                spoke = True
            delay = w0 + a - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = pcm[i * FRAME_IN * 2:(i + 1) * FRAME_IN * 2]
            if len(chunk) < FRAME_IN * 2:
                chunk = chunk + silence[len(chunk):]
            await mic.push_audio_frame(
                InputAudioRawFrame(audio=chunk, sample_rate=RATE_IN, num_channels=1))
            if running.done():
                raise RuntimeError("the pipeline ended during the trial")
        delay = w0 + duration - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        trial_end = time.perf_counter() - w0
        history = normalise_history(context.get_messages())
    finally:
        await task.cancel()
        try:
            await asyncio.wait_for(running, 10.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            running.cancel()

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - w0, 5)

    onset = float(trial.get("onset") or 0.0)
    after = [r for r, t in stamps.reply_created.items() if onset <= t - w0 <= trial_end]
    agent_reply = 1 if speak_at is not None and 1 in stamps.reply_created else None
    events = [(t - w0, kind, p, at) for t, kind, p, at in stamps.vad_events]
    # the same definitions as the other peers (benchmarks._peer_sink.analyse)
    crossings = [(t, at) for t, kind, p, at in events
                 if kind == "inference" and p is not None and p >= threshold]
    decided = next(((t, at) for t, at in crossings if t >= onset - 0.02), None)
    decision = decided[0] if decided else None
    facts: SinkFacts = analyse(
        [p for p in speaker.played if p.start - w0 < trial_end], w0=w0, onset=onset,
        trial_end=trial_end, vad_decision=decision,
        agent_reply=agent_reply,
        agent_frames=stamps.reply_frames.get(1) if agent_reply is not None else None,
        answer_replies=after)
    stopped = facts.stopped
    decisive = [e for e in events if stopped is not None and e[0] <= stopped]
    result: dict[str, Any] = {
        "vad_decision": None if decision is None else round(decision, 5),
        "stopped": None if stopped is None else round(stopped, 5),
        "stop_kind": facts.stop_kind,
        "played_after_decision": facts.played_after_decision if stopped is not None else None,
        "resumed": facts.resumed,
        "resumed_at": facts.resumed_at,
        "skipped": facts.skipped,
        "replayed": facts.replayed,
        "reply_first_frame": (None if facts.reply_first_frame is None
                              else round(facts.reply_first_frame, 5)),
        "replies": sum(1 for t in stamps.llm_runs if onset <= t - w0 <= trial_end),
        # extras the harness reads (benchmarks.voice_peers), defined as the other peers do
        "onset": trial.get("onset"), "end": trial.get("end"),
        "vad_start": next((t for t, k, _p, _a in events if k == "start" and t >= onset - 0.02), None),
        "vad_end": next((t for t, k, _p, _a in events if k == "end" and t >= onset), None),
        "decisive_event": ({"t": decisive[-1][0], "kind": decisive[-1][1], "speech_duration": None}
                           if decisive else None),
        "decisive_to_stopped": (stopped - decisive[-1][0]) if decisive and stopped is not None else None,
        "paused_for": (facts.resumed_at - stopped) if stopped is not None and facts.resumed_at else None,
        "transcript_at": rel(stamps.transcript_at),
        "early_crossings": sum(1 for t, _at in crossings if t < onset - 0.02),
        "history": history,
        "details": {
            **facts.details,
            "played_after_decision_to_trial_end": (facts.played_after_decision
                                                   if stopped is None else None),
            "vad_decision_window_end": decided[1] if decided else None,
            "vad_windows_over_threshold": len(crossings),
            "vad_starts": [round(t, 5) for t, k, _p, _a in events if k == "start"],
            "vad_ends": [round(t, 5) for t, k, _p, _a in events if k == "end"],
            "interruptions_at_output": [rel(t) for t in stamps.interruptions],
            "llm_runs": [rel(t) for t in stamps.llm_runs],
            "trial_end": round(trial_end, 5),
        },
    }
    return result, history


def _blank(trial: dict[str, Any], error: str | None) -> dict[str, Any]:
    return {"id": trial.get("id"), "scenario": trial.get("scenario"), "vad_decision": None,
            "stopped": None, "stop_kind": None, "played_after_decision": None, "resumed": None,
            "resumed_at": None, "skipped": None, "replayed": None, "history_equal": None,
            "reply_first_frame": None, "replies": 0, "error": error}


def run_trial(spec: dict[str, Any], trial: dict[str, Any],
              baselines: dict[tuple[Any, ...], list[tuple[str, str]]]) -> dict[str, Any]:
    """One trial in its own event loop; S9 trials also get the history of a run without the sound."""
    out = _blank(trial, None)
    pcm = read_wav(trial["wav"])
    limit = float(trial["duration"]) + 30.0
    result, history = asyncio.run(asyncio.wait_for(_run_pipeline(spec, trial, pcm), limit))
    out.update(result)
    if str(trial.get("scenario", "")).startswith("S9"):
        key = (trial.get("speak_at"), trial["duration"])
        if key not in baselines:
            quiet = dict(trial, transcript=None, id=f"{trial.get('id')}-baseline")
            _, baselines[key] = asyncio.run(asyncio.wait_for(
                _run_pipeline(spec, quiet, bytes(len(pcm))), limit))
        out["history_equal"] = history == baselines[key]
        out["details"]["baseline_history"] = baselines[key]
    return out


def warm_up(spec: dict[str, Any]) -> None:
    """A short silent run: imports, the ONNX session and numba's JIT, discarded."""
    trial = {"id": "warm-up", "scenario": "S10", "speak_at": 0.0, "onset": 0.5, "end": 0.6,
             "transcript": None, "duration": 0.6}
    asyncio.run(asyncio.wait_for(_run_pipeline(spec, trial, b""), 30.0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.peer_pipecat", description=__doc__.split("\n")[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-warm-up", action="store_true")
    ap.add_argument("--min-words", type=int, default=0,
                    help="variant (not the contract's): MinWordsUserTurnStartStrategy(min_words=N) "
                         "instead of the VAD start strategy")
    args = ap.parse_args(argv)
    spec: dict[str, Any] = {}
    doc: dict[str, Any] = {"impl": "pipecat", "versions": versions(), "settings": {}, "trials": []}
    try:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass
    try:
        spec = json.loads(Path(args.spec).read_text())
        if args.min_words:
            spec.setdefault("settings", {})["pipecat_min_words"] = args.min_words
        mapped, forced = pipecat_settings(spec.get("settings", {}))
        doc["settings"] = {**spec.get("settings", {}), "forced_differences": forced,
                           "pipecat": mapped, "model": model_check()}
        import pipecat  # noqa: F401  (fail early, once, with a clear error)

        if not args.no_warm_up:
            try:
                warm_up(spec)
            except Exception as exc:
                doc["warm_up_error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        doc["error"] = f"{type(exc).__name__}: {exc}"
        for trial in spec.get("trials", []):
            doc["trials"].append(_blank(trial, doc["error"]))
        Path(args.out).write_text(json.dumps(doc, indent=1))
        return 1
    baselines: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
    for trial in spec.get("trials", []):
        try:
            doc["trials"].append(run_trial(spec, trial, baselines))
        except BaseException as exc:  # one trial's failure is recorded, the run goes on
            if isinstance(exc, KeyboardInterrupt):
                raise
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            doc["trials"].append(_blank(trial, tb))
        Path(args.out).write_text(json.dumps(doc, indent=1))
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
