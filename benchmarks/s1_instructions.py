"""S1 in instructions: what ``interrupt()`` -> ``wait_for_playout()`` costs, counted.

``python -m benchmarks.s1_instructions`` (needs valgrind with its headers, gcc and
the Python headers; Linux). Wall-clock S1 figures move with the machine's load and
with how cold the caches are after the loop slept; an instruction count barely
does: whatever else the machine runs, the same code gives nearly the same count
(gc is off in the windows, as in the S1 worker, and the hash seed fixed; trio's
random batch order and the clock still move it by a fraction of a percent). So
this is the yardstick for cuts on the interrupt path, next to the real-clock S1 of
``python -m benchmarks``. Last output: ``benchmarks/results/s1_instructions.txt``.

It builds a tiny extension (into a temporary directory) whose one function flips
callgrind's collection, then runs, under ``valgrind --tool=callgrind
--collect-atstart=no``, K S1 windows of a trio-native session (the same
``RealtimeAudioSink(clear_delay=0)``, ``FakeTTS`` and 20 ms offset as the S1
worker), counting only inside the window, and reports instructions per window for:

- ``interrupt``: the synchronous ``handle.interrupt()`` call;
- ``wait``: ``await handle.wait_for_playout()`` after it (the speech's task
  unwinding, its history write, the waiter's wake-up);
- ``two_hop``: bare trio, ``Event.set()`` -> a task wakes and sets an event -> the
  waiter returns: the least an interrupt that another task completes can cost;
- ``cancel_exit``: bare trio, cancel a nursery whose child sleeps -> nursery exit.

``--function module:Qual.name`` (repeatable) also counts, per window, the
instructions spent inside one synchronous function (its inclusive cost, through a
wrapper that flips collection on entry and exit), e.g.
``trio_playout._audio:AudioOutput.clear_buffer``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

_TOGGLE_C = r"""
#include <Python.h>
#include <valgrind/callgrind.h>
static PyObject *toggle(PyObject *self, PyObject *args) { CALLGRIND_TOGGLE_COLLECT; Py_RETURN_NONE; }
static PyMethodDef methods[] = {{"toggle", toggle, METH_NOARGS, ""}, {0}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_cgtoggle", 0, -1, methods};
PyMODINIT_FUNC PyInit__cgtoggle(void) { return PyModule_Create(&def); }
"""

# Runs inside valgrind: argv = kind, K, [module:qual].
_CHILD = r"""
import gc, importlib, sys
import trio
import _cgtoggle
gc.collect()
gc.disable()  # as the S1 worker does: no collection inside a counted window
kind, k = sys.argv[1], int(sys.argv[2])
target = sys.argv[3] if len(sys.argv) > 3 else None
WARM = 3
on = [False]
if target:
    modname, qual = target.split(":")
    owner = importlib.import_module(modname)
    *path, name = qual.split(".")
    for part in path:
        owner = getattr(owner, part)
    orig = getattr(owner, name)
    def wrapper(*a, **kw):
        if not on[0]:
            return orig(*a, **kw)
        _cgtoggle.toggle()
        try:
            return orig(*a, **kw)
        finally:
            _cgtoggle.toggle()
    setattr(owner, name, wrapper)

def window(i, part):
    # collect around `part` of window i (never with --function: the wrapper collects)
    return i >= WARM and not target and kind == part

async def s1():
    import trio_playout as tp
    from trio_playout.testing import FakeTTS, ScriptedLLM
    from benchmarks.scenarios import SPEECH_TEXT
    sink = tp.RealtimeAudioSink(clear_delay=0)
    async with tp.open_session(llm=ScriptedLLM([]), output=sink, sink_grace=2.0,
                               tts=FakeTTS(words_per_second=3, frame_duration=0.1)) as s:
        for i in range(k + WARM):
            n = len(sink.records)
            h = s.say(SPEECH_TEXT)
            while len(sink.records) == n:
                await trio.sleep(0.001)
            await trio.sleep(0.02)
            on[0] = i >= WARM
            if window(i, "interrupt"): _cgtoggle.toggle()
            h.interrupt()
            if window(i, "interrupt"): _cgtoggle.toggle()
            if window(i, "wait"): _cgtoggle.toggle()
            await h.wait_for_playout()
            if window(i, "wait"): _cgtoggle.toggle()
            on[0] = False

async def floor():
    for i in range(k + WARM):
        back, forth = trio.Event(), trio.Event()
        async def worker():
            await forth.wait()
            back.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker if kind == "two_hop" else trio.sleep_forever)
            await trio.sleep(0.02)
            if i >= WARM: _cgtoggle.toggle()
            if kind == "two_hop":
                forth.set()
                await back.wait()  # the worker has exited too, as a speech's task has
                if i >= WARM: _cgtoggle.toggle()
            else:
                nursery.cancel_scope.cancel()
        if i >= WARM and kind == "cancel_exit": _cgtoggle.toggle()

trio.run(s1 if kind in ("interrupt", "wait", "function") else floor)
"""


def _build(tmp: Path) -> None:
    src = tmp / "_cgtoggle.c"
    src.write_text(_TOGGLE_C, encoding="utf-8")
    out = tmp / ("_cgtoggle" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    include = sysconfig.get_paths()["include"]
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f"-I{include}", str(src), "-o", str(out)],
                   check=True)


def _count(tmp: Path, kind: str, k: int, target: str | None = None) -> float:
    script = tmp / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    env_path = f"{tmp}:{root}"
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind not found")
    cmd = [valgrind, "--tool=callgrind", "--collect-atstart=no",
           f"--callgrind-out-file={tmp / 'cg.out'}", sys.executable, str(script), kind, str(k)]
    if target:
        cmd.append(target)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin",
                               "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise RuntimeError(f"valgrind run failed ({kind}): {proc.stderr[-2000:]}")
    match = re.search(r"Collected : ([\d,]+)", proc.stderr)
    if match is None:
        raise RuntimeError(f"no callgrind total in the output ({kind})")
    return int(match.group(1).replace(",", "")) / k


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.s1_instructions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-k", type=int, default=20, help="windows counted per run (default 20)")
    p.add_argument("--function", action="append", default=[], metavar="MODULE:QUAL",
                   help="also count inside this synchronous function, per window")
    args = p.parse_args(argv)
    if args.k < 1:
        p.error("-k must be at least 1")
    for tool in ("valgrind", "gcc"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: this benchmark needs valgrind and gcc", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        _build(tmp)
        rows = [(kind, _count(tmp, kind, args.k)) for kind in
                ("interrupt", "wait", "two_hop", "cancel_exit")]
        rows += [(f, _count(tmp, "function", args.k, f)) for f in args.function]
    s1 = rows[0][1] + rows[1][1]
    print(f"instructions per window (callgrind, K={args.k}, {sys.version.split()[0]})")
    for kind, n in rows:
        print(f"  {kind:<60} {n:>10,.0f}")
    print(f"  {'S1 = interrupt + wait':<60} {s1:>10,.0f}  ({s1 / rows[2][1]:.1f}x two_hop)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
