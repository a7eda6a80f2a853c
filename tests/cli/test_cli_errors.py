"""The real ``xiaoq`` console script: help, version, and every user error as one line, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.procs import assert_one_line_error, run_xiaoq
from xiaoq import __version__
from xiaoq.config import Settings

REQUIRED_SERVE_FLAGS = ["--model", "--host", "--port", "--ctx", "--threads", "--batch", "--parallel", "--queue",
                        "--cpus", "--api-key", "--insecure", "--max-tokens"]


def test_help_lists_every_setting_flag(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["serve", "--help"], cli_env)
    assert r.returncode == 0, r.stderr
    for flag in REQUIRED_SERVE_FLAGS:
        assert flag in r.stdout, flag
    for name, field in Settings.model_fields.items():  # generated from the model: nothing missing
        flag = field.json_schema_extra["flag"]  # type: ignore[index]
        assert flag.split("/")[0] in r.stdout, flag
        assert f"XIAOQ_{name.upper()}" in r.stdout


def test_top_level_help_and_version(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["--help"], cli_env)
    assert r.returncode == 0
    for command in ("serve", "chat", "pull"):
        assert command in r.stdout
    r = run_xiaoq(["--version"], cli_env)
    assert r.returncode == 0 and r.stdout.strip() == f"xiaoq {__version__}"


def test_chat_help_has_chat_options(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["chat", "--help"], cli_env)
    assert r.returncode == 0
    for flag in ("--url", "--api-key", "--system", "--max-tokens", "--temperature", "--model", "--ctx", "--threads"):
        assert flag in r.stdout, flag


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_missing_default_model_is_one_clear_line(cli_env: dict[str, str], command: str) -> None:
    r = run_xiaoq([command], cli_env)
    line = assert_one_line_error(r, 1, "qwen2.5-0.5b-instruct-q4_k_m.gguf", "xiaoq pull", "--model /path/to/file.gguf", "XIAOQ_MODEL")
    assert cli_env["HF_HOME"] in line  # says where it looked


def test_missing_model_with_other_quant_names_the_pull_command(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["serve", "--quant", "q8_0"], cli_env)
    assert_one_line_error(r, 1, "qwen2.5-0.5b-instruct-q8_0.gguf", "xiaoq pull --quant q8_0")


def test_missing_local_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    r = run_xiaoq(["serve", "--model", str(missing)], cli_env)
    assert_one_line_error(r, 1, str(missing), "not found")


def test_model_from_env_var(cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "from-env.gguf"
    r = run_xiaoq(["serve"], {**cli_env, "XIAOQ_MODEL": str(missing)})
    assert_one_line_error(r, 1, str(missing))


def test_truncated_gguf_names_the_path(cli_env: dict[str, str], tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])  # the header is whole, the tensor data is not
    r = run_xiaoq(["serve", "--model", str(cut)], cli_env)
    assert_one_line_error(r, 1, str(cut), "truncated")
    r = run_xiaoq(["chat", "--model", str(cut)], cli_env)
    assert_one_line_error(r, 1, str(cut), "truncated")


def test_non_gguf_file_names_the_path(cli_env: dict[str, str], tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text("<html>404 Not Found</html>" * 10)
    r = run_xiaoq(["serve", "--model", str(bogus)], cli_env)
    assert_one_line_error(r, 1, str(bogus), "not a GGUF")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_non_loopback_host_without_key_is_refused(cli_env: dict[str, str], host: str) -> None:
    r = run_xiaoq(["serve", "--host", host], cli_env)
    assert_one_line_error(r, 2, host, "--api-key", "--insecure")


def test_non_loopback_host_passes_the_check_with_key_or_insecure(cli_env: dict[str, str]) -> None:
    # Past the bind check the next step is the model, which is missing here: exit 1 about the model.
    for extra in (["--api-key", "k"], ["--insecure"]):
        r = run_xiaoq(["serve", "--host", "0.0.0.0", *extra], cli_env)
        assert_one_line_error(r, 1, "xiaoq pull")
    r = run_xiaoq(["serve", "--host", "0.0.0.0"], {**cli_env, "XIAOQ_API_KEY": "k"})
    assert_one_line_error(r, 1, "xiaoq pull")


def test_bad_flag_value_names_flag_and_env(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["serve", "--port", "70000"], cli_env)
    assert_one_line_error(r, 2, "--port", "XIAOQ_PORT", "70000")
    r = run_xiaoq(["serve", "--ctx", "ten"], cli_env)
    assert_one_line_error(r, 2, "--ctx")


def test_bad_env_value_is_one_line(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["serve"], {**cli_env, "XIAOQ_PORT": "abc"})
    assert_one_line_error(r, 2, "XIAOQ_PORT", "from the environment", "abc")


def test_chat_flags_are_validated_by_the_settings_model(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["chat", "--temperature", "9"], cli_env)
    assert_one_line_error(r, 2, "--temperature")
    r = run_xiaoq(["chat", "--max-tokens", "0"], cli_env)
    assert_one_line_error(r, 2, "--max-tokens")


def test_unknown_option_and_command(cli_env: dict[str, str]) -> None:
    assert_one_line_error(run_xiaoq(["serve", "--bogus"], cli_env), 2, "--bogus")
    assert_one_line_error(run_xiaoq(["frobnicate"], cli_env), 2, "frobnicate")


def test_cpus_that_do_not_exist(cli_env: dict[str, str]) -> None:
    r = run_xiaoq(["serve", "--cpus", "0,4095"], cli_env)
    assert_one_line_error(r, 2, "--cpus", "4095")
    r = run_xiaoq(["serve", "--cpus", "zero"], cli_env)
    assert_one_line_error(r, 2, "--cpus")


def test_directory_as_model(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = run_xiaoq(["serve", "--model", str(tmp_path)], cli_env)
    assert_one_line_error(r, 1, str(tmp_path), "not a file")


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import xiaoq.cli.serve
    from xiaoq.cli import main

    def boom(given: object) -> None:
        raise RuntimeError("something broke\ninside")

    monkeypatch.setattr(xiaoq.cli.serve, "build_settings", boom)
    monkeypatch.delenv("XIAOQ_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: unexpected RuntimeError: something broke inside (set XIAOQ_DEBUG=1 to see the traceback)"]

    monkeypatch.setenv("XIAOQ_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something broke"):
        main(["serve"])
