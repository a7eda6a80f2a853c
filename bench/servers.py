"""Starting, health-waiting, measuring and always stopping the servers under test.

Each server runs in its own process group on 127.0.0.1 and a free port, with its output in a log
file. ``ServerPool`` is a context manager whose exit (normal, exception or Ctrl-C) terminates every
group it started, so a failed benchmark never leaves a model-sized process on a shared machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerSpec:
    """How to launch one side of the comparison."""

    name: str  # "xiaoq" or "llama-server"
    argv: list[str]
    port: int
    env: Optional[dict[str, str]] = None
    #: A scratch directory the server writes into, removed when the server stops.
    scratch: Optional[Path] = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def xiaoq_spec(model: str, *, threads: int, ctx: int, parallel: Optional[int] = None,
               kv_cache_mb: Optional[int] = None, kv_disk_mb: int = 0, batch: Optional[int] = None,
               extra: tuple[str, ...] = ()) -> ServerSpec:
    """``xiaoq serve`` with the settings shared with llama-server (None: XiaoQ's default).

    It runs in a fresh temporary data directory (database, KV states), never the user's own, and
    without its disk KV tier unless ``kv_disk_mb`` asks for one: llama-server has no such tier, so
    the head-to-head figures compare RAM against RAM; the disk tier is measured on its own."""
    port = free_port()
    exe = ROOT / ".venv" / "bin" / "xiaoq"
    scratch = Path(tempfile.mkdtemp(prefix="xiaoq-bench-"))
    argv = [str(exe), "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads), "--ctx", str(ctx), "--data-dir", str(scratch), "--kv-disk-mb", str(kv_disk_mb)]
    if batch is not None:
        argv += ["--batch", str(batch)]
    if parallel is not None:
        argv += ["--parallel", str(parallel)]
    if kv_cache_mb is not None:
        argv += ["--kv-cache-mb", str(kv_cache_mb)]
    argv += list(extra)
    return ServerSpec("xiaoq", argv, port, scratch=scratch)


def llama_server_spec(binary: Path, model: str, *, threads: int, ctx: int, parallel: int,
                      extra: tuple[str, ...] = ()) -> ServerSpec:
    """llama-server with one unified KV buffer of ``ctx * parallel`` cells shared by its slots.

    XiaoQ gives every conversation the whole ``--ctx`` even when all slots are busy: its single
    context holds a unified pool of ``ctx * parallel`` cells. llama-server gets the same capacity
    (``-c ctx*np --kv-unified``; without ``--kv-unified`` it would give each slot ``-c / np`` cells,
    with ``-c ctx`` alone four busy slots would share 4096 cells), so both servers hold the same KV
    memory and allow the same conversation length when all slots are busy.
    """
    port = free_port()
    argv = [str(binary), "-m", model, "--host", "127.0.0.1", "--port", str(port),
            "-t", str(threads), "-tb", str(threads), "-c", str(ctx * parallel),
            "-np", str(parallel), "--kv-unified", "--no-webui"] + list(extra)
    return ServerSpec("llama-server", argv, port)


@dataclass
class RunningServer:
    spec: ServerSpec
    proc: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.perf_counter)
    load_seconds: Optional[float] = None

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def peak_rss_mb(self) -> Optional[float]:
        """Peak resident memory (VmHWM) of the server and any child processes, in MiB.

        VmHWM is the kernel's own high-water mark, so no polling is needed to catch the peak.
        It includes the model's mmapped pages that were touched, for both servers alike.
        """
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return None
        total_kb = 0
        for p in procs:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total_kb += int(line.split()[1])
            except OSError:
                continue
        return total_kb / 1024.0 if total_kb else None

    def stop(self, grace: float = 10.0, *, keep_scratch: bool = False) -> None:
        """SIGTERM the whole process group, then SIGKILL after ``grace`` seconds; remove its scratch
        directory unless ``keep_scratch`` (a restart with the same data directory follows)."""
        try:
            self._stop(grace)
        finally:
            if self.spec.scratch is not None and not keep_scratch:
                shutil.rmtree(self.spec.scratch, ignore_errors=True)

    def _stop(self, grace: float) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)


class ServerError(RuntimeError):
    pass


def _sigterm_as_interrupt(signum, frame):  # noqa: ARG001
    """A SIGTERM to the bench takes the same cleanup path as Ctrl-C."""
    raise KeyboardInterrupt


class ServerPool:
    """Starts servers and guarantees they are all stopped when the ``with`` block ends."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.servers: list[RunningServer] = []

    def __enter__(self) -> "ServerPool":
        self._old_term = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()
        signal.signal(signal.SIGTERM, self._old_term)

    def stop_all(self) -> None:
        for s in self.servers:
            s.stop()
        self.servers.clear()

    def stop(self, server: RunningServer, *, keep_scratch: bool = False, grace: float = 10.0) -> None:
        server.stop(grace, keep_scratch=keep_scratch)
        if server in self.servers:
            self.servers.remove(server)

    def start(self, spec: ServerSpec, *, health_timeout: float = 180.0, poll: float = 0.25) -> RunningServer:
        """Launch ``spec`` and wait until GET /health answers 200 (503 means still loading), asking
        every ``poll`` seconds."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}-{spec.port}.log"
        log = open(log_path, "wb")
        env = dict(os.environ, **(spec.env or {}))
        try:
            proc = subprocess.Popen(spec.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        except OSError as exc:
            log.close()
            raise ServerError(f"cannot start {spec.name}: {exc}") from exc
        log.close()  # the child holds its own descriptor
        server = RunningServer(spec, proc, log_path)
        self.servers.append(server)
        deadline = time.monotonic() + health_timeout
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if not server.alive():
                    self.stop(server)
                    raise ServerError(f"{spec.name} exited with code {proc.returncode} while loading:\n"
                                      f"{server.log_tail()}")
                try:
                    if client.get(f"{spec.base_url}/health").status_code == 200:
                        server.load_seconds = time.perf_counter() - server.started
                        return server
                except httpx.HTTPError:
                    pass
                time.sleep(poll)
        tail = server.log_tail()
        self.stop(server)
        raise ServerError(f"{spec.name} not healthy after {health_timeout:.0f}s:\n{tail}")
