"""The deployment files are valid for the tools that read them: the systemd unit for
``systemd-analyze verify``, the compose file for ``docker-compose config`` (or ``docker compose``).
The image itself is built and run by deploy/docker/check.sh (too slow for the suite)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies_and_is_sandboxed(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "xiaoq.service").read_text()
    for line in ("User=xiaoq", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "Restart=on-failure",
                 "LoadCredential=api_key:/etc/xiaoq/api_key", "Environment=XIAOQ_API_KEY_FILE=%d/api_key"):
        assert line in unit.splitlines(), line
    # verify checks that ExecStart exists: point it at this environment's console script.
    here = shutil.which("xiaoq", path=str(Path(sys.executable).parent)) or sys.executable
    copy = tmp_path / "xiaoq.service"
    copy.write_text(unit.replace("/opt/xiaoq/.venv/bin/xiaoq", here))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor docker compose installed")


def test_compose_file_is_valid(tmp_path: Path) -> None:
    compose = _compose()
    env = (DEPLOY / "compose.env.example").read_text()
    (tmp_path / ".env").write_text(env)
    (tmp_path / "api_key").write_text("k\n")
    shutil.copy(DEPLOY / "compose.yaml", tmp_path / "compose.yaml")
    r = subprocess.run([*compose, "-f", str(tmp_path / "compose.yaml"), "--project-directory", str(tmp_path), "config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for needed in ("llama-1", "llama-2", "postgres", "XIAOQ_UPSTREAM", "XIAOQ_API_KEY_FILE", "127.0.0.1:8000"):
        assert needed in r.stdout, needed


def test_compose_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    compose = _compose()
    (tmp_path / "api_key").write_text("k\n")
    shutil.copy(DEPLOY / "compose.yaml", tmp_path / "compose.yaml")
    r = subprocess.run([*compose, "-f", str(tmp_path / "compose.yaml"), "--project-directory", str(tmp_path), "config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "XIAOQ_PG_PASSWORD" in r.stderr + r.stdout
