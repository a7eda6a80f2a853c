"""``xiaoq kb`` on a real SQLite file (and the main walk on a real PostgreSQL): in-process through ``xiaoq.cli.main`` (each console-script
start costs seconds of imports on two busy cores), and once through the real console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.procs import assert_one_line_error, run_xiaoq
from tests.kb import docs
from xiaoq.cli import main


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "XIAOQ_KB_DENSE": "0"}


@pytest.fixture()
def run_xiaoq_inproc(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``run_xiaoq`` without the subprocess: same argv, environment, exit status and streams."""
    for k in [k for k in __import__("os").environ if k.startswith("XIAOQ_")]:
        monkeypatch.delenv(k)

    def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        for k, v in env.items():
            if k.startswith("XIAOQ_"):
                monkeypatch.setenv(k, v)
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_add_list_search_remove(backend: str, request: pytest.FixtureRequest, cli_env: dict[str, str], tmp_path: Path, run_xiaoq_inproc) -> None:  # type: ignore[no-untyped-def]
    env, run_xiaoq = _env(cli_env), run_xiaoq_inproc
    if backend == "postgresql":  # the same commands with --db's environment variable naming a real PostgreSQL
        env["XIAOQ_DB"] = request.getfixturevalue("pg_url")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "admin.md").write_text(docs.MARKDOWN, encoding="utf-8")
    (folder / "it.html").write_text(docs.HTML, encoding="utf-8")
    (folder / "broken.docx").write_bytes(b"not a zip")
    r = run_xiaoq(["kb", "add", "--kb", "office", str(folder)], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "office: 2 added, 0 unchanged, 0 removed, 1 unreadable; 4 passages indexed"
    bad = [line for line in r.stderr.splitlines() if "broken.docx" in line]
    assert len(bad) == 1 and bad[0].startswith(f"skipped {folder / 'broken.docx'}: cannot read it as DOCX")
    assert "Traceback" not in r.stderr

    again = run_xiaoq(["kb", "add", "--kb", "office", str(folder)], env)
    assert "0 added, 2 unchanged" in again.stdout

    listed = run_xiaoq(["kb", "list"], env)
    assert listed.stdout.split("\t")[0] == "office" and "2 documents" in listed.stdout
    docs_json = json.loads(run_xiaoq(["kb", "list", "--kb", "office", "--json"], env).stdout)["data"]
    assert sorted(Path(d["source"]).name for d in docs_json) == ["admin.md", "it.html"]

    found = json.loads(run_xiaoq(["kb", "search", "--kb", "office", "--json", "VPN 端口是多少"], env).stdout)["data"]
    assert found[0]["anchor"] == "vpn-setup" and Path(found[0]["source"]).name == "it.html"
    assert set(found[0]) >= {"chunk_id", "source", "heading", "anchor", "snippet", "score"}
    text = run_xiaoq(["kb", "search", "--kb", "office", "停车证"], env).stdout
    assert text.startswith("[1] ") and "admin.md#停车-规定" in text

    removed = run_xiaoq(["kb", "remove", "--kb", "office", str(folder / "admin.md")], env)
    assert removed.stdout.strip() == "removed 1 document from office"
    assert run_xiaoq(["kb", "remove", "--kb", "office"], env).stdout.strip() == "removed knowledge base office"
    assert run_xiaoq(["kb", "list"], env).stdout == ""


def test_errors_are_one_line(cli_env: dict[str, str], tmp_path: Path, run_xiaoq_inproc) -> None:  # type: ignore[no-untyped-def]
    env = _env(cli_env)
    assert_one_line_error(run_xiaoq_inproc(["kb", "search", "--kb", "Nope!", "x"], env), 2, "invalid knowledge base name")
    assert_one_line_error(run_xiaoq(["kb", "search", "--kb", "missing", "x"], env), 1, "No knowledge base named 'missing'")
    r = run_xiaoq_inproc(["kb", "add", str(tmp_path / "absent.md")], env)
    assert r.returncode == 1 and "skipped" in r.stderr and "No such file" in r.stderr


def test_share_with_a_group_then_everyone(cli_env: dict[str, str], tmp_path: Path, run_xiaoq_inproc) -> None:  # type: ignore[no-untyped-def]
    """The company's steps: users with groups, an HR knowledge base given to its admin and shared
    with the group hr; who may use it follows, as the server's views see it."""
    from xiaoq.auth.accounts import Accounts
    from xiaoq.store import Store
    from xiaoq.store.kb import KnowledgeStore
    from xiaoq.store.users import UserStore

    env = _env(cli_env)
    folder = tmp_path / "hr"
    folder.mkdir()
    (folder / "leave.md").write_text(docs.MARKDOWN, encoding="utf-8")
    store = Store(env["XIAOQ_DB"])
    accounts = Accounts(UserStore(store.db))
    users = {n: accounts.create(n, None, role, groups) for n, role, groups in (("root", "admin", ()), ("hana", "user", ("hr",)), ("bob", "user", ()))}
    store.close()
    assert run_xiaoq_inproc(["kb", "add", "--kb", "hr", str(folder)], env).returncode == 0
    r = run_xiaoq_inproc(["kb", "share", "--kb", "hr", "--group", "hr", "--owner", "root"], env)
    assert r.returncode == 0 and "hr: group hr (owner: root)" in r.stdout, r.stderr

    def visible() -> dict[str, list[str]]:
        s = Store(env["XIAOQ_DB"])
        try:
            ks = KnowledgeStore(s.db)
            return {n: [k["name"] for k in ks.for_viewer(u).list_kbs()] for n, u in users.items()}
        finally:
            s.close()

    assert visible() == {"root": ["hr"], "hana": ["hr"], "bob": []}
    assert run_xiaoq_inproc(["kb", "share", "--kb", "hr", "--everyone"], env).returncode == 0
    assert visible()["bob"] == ["hr"]
    assert run_xiaoq_inproc(["kb", "share", "--kb", "hr", "--private"], env).returncode == 0
    assert visible() == {"root": ["hr"], "hana": [], "bob": []}
    assert_one_line_error(run_xiaoq_inproc(["kb", "share", "--kb", "hr"], env), 2, "one of --everyone")
    assert_one_line_error(run_xiaoq_inproc(["kb", "share", "--kb", "hr", "--everyone", "--owner", "nobody"], env), 1, "nobody")
