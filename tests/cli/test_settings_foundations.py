"""The settings the later features build on: list settings (repeatable flag, comma-separated env),
the data directory and what lives under it, ``--db`` as a path or a URL, the API key file."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xiaoq.cli.options import build_settings, settings_options
from xiaoq.config import Settings


@click.command()
@settings_options(["allowed_hosts", "allowed_origins", "data_dir", "db", "api_key_file"])
def show(**given: object) -> None:
    s = build_settings(given)
    click.echo(f"{s.allowed_hosts}|{s.allowed_origins}|{s.db_path()}|{s.kv_disk_dir()}|{s.key()}")


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    clean = {"XIAOQ_ALLOWED_HOSTS": None, "XIAOQ_ALLOWED_ORIGINS": None, "XIAOQ_DATA_DIR": None, "XIAOQ_DB": None, "XIAOQ_API_KEY_FILE": None, "XIAOQ_API_KEY": None}
    r = CliRunner().invoke(show, args, env={**clean, **(env or {})})
    assert r.exit_code == 0, r.output
    return r.output.strip()


def test_list_settings_repeat_as_flags_and_split_on_commas_in_the_env(tmp_path: Path) -> None:
    db = f"--db={tmp_path / 'x.db'}"
    assert run([db, "--allowed-hosts", "a.lan", "--allowed-hosts", "B.lan,*.corp.example"]).startswith("['a.lan', 'b.lan', '*.corp.example']|[]")
    assert run([db], {"XIAOQ_ALLOWED_HOSTS": "a.lan, b.lan", "XIAOQ_ALLOWED_ORIGINS": "https://App.example.com:443,http://x.lan:8080"}).startswith(
        "['a.lan', 'b.lan']|['https://app.example.com', 'http://x.lan:8080']"
    )
    # A flag replaces the env list (flags win over the environment, as for every setting).
    assert run([db, "--allowed-hosts", "c.lan"], {"XIAOQ_ALLOWED_HOSTS": "a.lan"}).startswith("['c.lan']")
    assert run([db]).startswith("[]|[]")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--allowed-hosts", "http://a.lan"], "--allowed-hosts"),
        (["--allowed-hosts", "a.lan:8000"], "without scheme or port"),
        (["--allowed-origins", "app.example.com"], "--allowed-origins"),
        (["--allowed-origins", "https://app.example.com/path"], "no path"),
        (["--allowed-origins", "null"], "not an origin"),
        (["--db", "mysql://u@h/x"], "unknown database URL scheme"),
    ],
)
def test_bad_values_are_one_usage_error(args: list[str], needle: str) -> None:
    r = CliRunner().invoke(show, args, env={"XIAOQ_ALLOWED_HOSTS": None, "XIAOQ_ALLOWED_ORIGINS": None, "XIAOQ_DB": None})
    assert r.exit_code == 2 and needle in r.output, r.output


def test_data_dir_holds_the_database_and_kv_states(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "d", _env_file=None)
    assert (s.db_path(), s.kv_disk_dir(), s.uploads_dir()) == (tmp_path / "d" / "xiaoq.db", tmp_path / "d" / "kv", tmp_path / "d" / "uploads")
    s = Settings(data_dir=tmp_path / "d", db=str(tmp_path / "elsewhere.db"))
    assert s.db_path() == tmp_path / "elsewhere.db" and s.kv_disk_dir() == tmp_path / "d" / "kv"
    s = Settings(db=str(tmp_path / "only.db"))  # without --data-dir, the database's folder
    assert s.kv_disk_dir() == tmp_path / "kv"


def test_db_takes_a_sqlite_url(tmp_path: Path) -> None:
    assert Settings(db=f"sqlite:///{tmp_path}/u.db").db_path() == tmp_path / "u.db"  # sqlite:////abs
    assert Settings(db="sqlite:///rel/u.db").db_path() == Path("rel/u.db")
    assert Settings(db=str(tmp_path / "p.db")).db_path() == tmp_path / "p.db"


def test_db_takes_a_postgresql_url(tmp_path: Path) -> None:
    url = "postgresql://xiaoq@db.lan:5432/xiaoq"
    s = Settings(db=url, data_dir=tmp_path / "d")
    assert s.database() == url and s.kv_disk_dir() == tmp_path / "d" / "kv"
    assert Settings(db=str(tmp_path / "p.db")).database() == str(tmp_path / "p.db")
    with pytest.raises(ValueError, match="names no file"):
        s.db_path()


def test_the_key_file_gives_the_key(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("  s3cret  \nsecond line ignored\n")
    out = run([f"--db={tmp_path / 'x.db'}", "--api-key-file", str(f)])
    assert out.endswith("|s3cret")
    out = run([f"--db={tmp_path / 'x.db'}"], {"XIAOQ_API_KEY_FILE": str(f)})
    assert out.endswith("|s3cret")
