"""A throwaway PostgreSQL server for the tests: ``initdb`` in a temporary folder (C.UTF-8, so pg_trgm
indexes Chinese), a Unix socket in that folder and no TCP port, fsync off. initdb and postgres refuse
to run as root, so as root they run as the ``postgres`` user (Debian's package creates it)."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional


def pg_bin() -> Optional[Path]:
    """Debian's server binaries (/usr/lib/postgresql/<v>/bin), newest first, or initdb on PATH."""
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(found).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PgServer:
    """Start with :meth:`start`, make databases with :meth:`new_database`, :meth:`stop` at the end."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="xiaoq-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._names = itertools.count(1)
        self._template_ready = False

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> "PgServer":
        assert self.bin is not None
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        r = self._run(self.bin / "initdb", "-D", data, "--locale", "C.UTF-8", "--encoding", "UTF8", "-A", "trust", "-U", self.user)
        assert r.returncode == 0, r.stderr
        options = f"-c listen_addresses='' -k {self.dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        r = self._run(self.bin / "pg_ctl", "-D", data, "-o", options, "-l", self.dir / "log", "-w", "-t", "60", "start")
        assert r.returncode == 0, r.stderr + (self.dir / "log").read_text()
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.dir}"

    def new_database(self, *, migrated: bool = True) -> str:
        """A fresh database; its URL. ``migrated``: a copy of one that XiaoQ already migrated
        (copying is much faster than migrating again); else empty."""
        import psycopg

        template = "template0"
        if migrated:
            template = "xiaoq_template"
            if not self._template_ready:
                self._create("xiaoq_template", "template0")
                from xiaoq.store.pg import PgDatabase

                PgDatabase(self.url("xiaoq_template")).close()
                self._template_ready = True
        name = f"t{os.getpid()}_{next(self._names)}"
        self._create(name, template)
        return self.url(name)

    def _create(self, name: str, template: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} ENCODING 'UTF8' LOCALE 'C.UTF-8'")

    def stop(self) -> None:
        if self.bin is not None and (self.dir / "data" / "postmaster.pid").exists():
            self._run(self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
