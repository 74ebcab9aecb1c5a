"""The demo (the README's main job) runs and tells the story it promises.

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
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_playout import demo


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
    argv = ["--barge-in-after", barge, "--clear-delay", clear, "--sink-grace", grace]
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


def test_default_options_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([], clock=trio.testing.MockClock(autojump_threshold=0)) == 0
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
        ["--barge-in-after", "-1"],
        ["--barge-in-after", "nan"],
        ["--barge-in-after", "inf"],
        ["--barge-in-after", "soon"],
    ],
)
def test_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(argv, clock=trio.testing.MockClock(autojump_threshold=0))
    assert exc.value.code == 2
    assert "trio-playout demo" not in capsys.readouterr().out  # it never started


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
    # the two set-up commands
    assert "python -m pip install -e . && python -m trio_playout.demo" in readme
    assert "python -m pip install -e '.[test]' && python -m pytest" in readme


def test_license_file_is_the_one_pyproject_names() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = \{ text = "Apache-2.0" \}$', pyproject, re.MULTILINE)
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
