"""Where XiaoQ's time goes: py-spy sampling of the server process during each scenario.

Issue 5 asks, for every missed target, for a profile that says where the time goes. With
``run.py --profile`` each XiaoQ scenario runs under ``py-spy record --nonblocking`` (sampling
without pausing the process, so the figures move little) and the report gets the functions that
were on CPU most often: *self* = the sampled frame was this function (time spent in it, including
native code it called when ``--native`` is off), *total* = this function was anywhere on the stack.

py-spy is not a project dependency: set ``XIAOQ_PY_SPY`` or put ``py-spy`` on PATH, e.g.
``python3 -m pip install --target ~/.cache/xiaoq/bench/pyspy py-spy`` (found there too).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

_LINE_NO = re.compile(r":\d+\)$")


def find_py_spy() -> Optional[Path]:
    candidates = [os.environ.get("XIAOQ_PY_SPY"), shutil.which("py-spy"),
                  str(Path.home() / ".cache" / "xiaoq" / "bench" / "pyspy" / "bin" / "py-spy")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


class PySpyRecorder:
    """``py-spy record`` of one process into a folded-stacks file, from start() to stop()."""

    def __init__(self, exe: Path, pid: int, out: Path, *, rate: int = 100, native: bool = False):
        self.argv = [str(exe), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                     "-o", str(out), "--nonblocking"] + (["--native"] if native else [])
        self.out = out
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

    def stop(self) -> Optional[Path]:
        """SIGINT makes py-spy write its file and exit; the file, or None if it wrote nothing."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.out if self.out.is_file() and self.out.stat().st_size > 0 else None


def read_folded(paths: Iterable[Path]) -> Counter:
    """Stacks (tuples of frames, outermost first) to sample counts, merged over files."""
    stacks: Counter = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = tuple(_LINE_NO.sub(")", f.strip()) for f in stack.split(";"))
            stacks[frames] += int(count)
    return stacks


def top_frames(stacks: Counter, n: int = 12) -> list[tuple[str, float, float]]:
    """(function, self %, total %) of the ``n`` functions with the most self samples."""
    total = sum(stacks.values())
    if not total:
        return []
    self_c: Counter = Counter()
    incl: Counter = Counter()
    for frames, count in stacks.items():
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    return [(f, 100.0 * c / total, 100.0 * incl[f] / total) for f, c in self_c.most_common(n)]


@dataclass
class ProfilePlan:
    """Which server processes to sample (side name -> pid), with which py-spy, into which folder."""

    exe: Path
    pids: dict[str, int]
    out_dir: Path
    native: bool = False
    files: dict[str, list[Path]] = field(default_factory=dict)  # scenario -> folded files

    def recorder(self, side: str, scenario: str, rep: int) -> Optional[PySpyRecorder]:
        if side not in self.pids:
            return None
        out = self.out_dir / f"{side}-{scenario}-rep{rep + 1}.txt"
        return PySpyRecorder(self.exe, self.pids[side], out, native=self.native)

    def keep(self, scenario: str, path: Optional[Path]) -> None:
        if path is not None:
            self.files.setdefault(scenario, []).append(path)

    def summary(self, n: int = 12) -> dict[str, list[tuple[str, float, float]]]:
        return {scenario: top_frames(read_folded(paths), n) for scenario, paths in self.files.items()}
