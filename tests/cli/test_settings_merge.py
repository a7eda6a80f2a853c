"""Flags, env vars and defaults merge through the one Settings model: defaults < XIAOQ_* < flags."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from xiaoq.cli.chat import CHAT_FLAGS, CHAT_SETTINGS, chat
from xiaoq.cli.options import build_settings, flag_of, settings_options
from xiaoq.cli.serve import serve
from xiaoq.config import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"XIAOQ_{name.upper()}", raising=False)


def test_defaults_when_nothing_given() -> None:
    s = build_settings({name: None for name in Settings.model_fields})
    assert (s.port, s.ctx, s.host, s.mmap, s.insecure) == (8000, 4096, "127.0.0.1", True, False)


def test_env_beats_default_and_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIAOQ_PORT", "9001")
    monkeypatch.setenv("XIAOQ_CTX", "2048")
    monkeypatch.setenv("XIAOQ_MMAP", "false")
    s = build_settings({"port": None, "ctx": 1024, "mmap": None})
    assert s.port == 9001  # env over default
    assert s.ctx == 1024  # flag over env
    assert s.mmap is False
    s = build_settings({"mmap": True})
    assert s.mmap is True  # --mmap beats XIAOQ_MMAP=false


def test_bad_value_is_a_usage_error_naming_flag_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(click.UsageError, match=r"invalid --port \(XIAOQ_PORT\) 70000"):
        build_settings({"port": 70000})
    monkeypatch.setenv("XIAOQ_BATCH", "1")
    with pytest.raises(click.UsageError, match=r"--batch \(XIAOQ_BATCH\) from the environment"):
        build_settings({})
    with pytest.raises(click.UsageError, match=r"invalid --max-tokens \(XIAOQ_DEFAULT_MAX_TOKENS\)"):
        build_settings({"default_max_tokens": 0}, flags=CHAT_FLAGS)


def _captured_settings(command: click.Command, args: list[str], monkeypatch: pytest.MonkeyPatch, module: str) -> Settings:
    """Run a real command with the given args up to the point where it has built its Settings."""
    import importlib

    mod = importlib.import_module(module)
    seen: list[Settings] = []
    real = mod.build_settings

    def spy(given: dict, **kw: object) -> Settings:
        seen.append(real(given, **kw))
        raise click.exceptions.Exit(0)

    monkeypatch.setattr(mod, "build_settings", spy)
    result = CliRunner().invoke(command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen[0]


def test_serve_options_feed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIAOQ_QUEUE", "3")
    monkeypatch.setenv("XIAOQ_PORT", "9100")
    s = _captured_settings(serve, ["--port", "9200", "--insecure", "--no-mmap", "--cpus", "0", "--max-tokens", "99",
                                   "--api-key", "sekrit", "--host", "::1", "--threads", "1", "--batch", "64",
                                   "--parallel", "2", "--ctx", "512", "--model", "/x.gguf"], monkeypatch, "xiaoq.cli.serve")
    assert (s.port, s.queue, s.insecure, s.mmap, s.cpus, s.max_tokens) == (9200, 3, True, False, "0", 99)
    assert (s.api_key, s.host, s.threads, s.batch, s.parallel, s.ctx, s.model) == ("sekrit", "::1", 1, 64, 2, 512, "/x.gguf")


def test_chat_options_map_to_settings_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIAOQ_TEMPERATURE", "0.1")
    s = _captured_settings(chat, ["--system", "be brief", "--max-tokens", "33", "--seed", "7"], monkeypatch, "xiaoq.cli.chat")
    assert (s.system_prompt, s.default_max_tokens, s.seed, s.temperature) == ("be brief", 33, 7, 0.1)


def test_every_flagged_setting_is_a_serve_option() -> None:
    opts = {o.name: o for o in serve.params if isinstance(o, click.Option)}
    for name in Settings.model_fields:
        flag = flag_of(name)
        assert flag, f"setting {name} has no flag"
        assert name in opts, name
        assert opts[name].default is None  # None = not given: env and the model's default apply
        assert flag.split("/")[0] in opts[name].opts


def test_chat_options_are_a_subset_of_settings() -> None:
    names = {o.name for o in chat.params if isinstance(o, click.Option)}
    assert set(CHAT_SETTINGS) <= names
    assert set(CHAT_SETTINGS) <= set(Settings.model_fields)


def test_settings_options_keep_the_given_order() -> None:
    @click.command()
    @settings_options(["port", "host", "ctx"])
    def cmd(**kw: object) -> None:
        pass

    assert [p.name for p in cmd.params] == ["port", "host", "ctx"]
