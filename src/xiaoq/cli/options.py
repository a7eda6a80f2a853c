"""Click options generated from :class:`xiaoq.config.Settings`, and the one place flags meet env vars.

Each Settings field with a ``flag`` in its ``json_schema_extra`` becomes an option whose default is
``None`` ("not given"); a list field becomes a repeatable option (nothing given: ``()``). :func:`build_settings` passes only the given flags to ``Settings(**given)``;
pydantic-settings ranks init kwargs above ``XIAOQ_*`` env vars above field defaults, so the merge
``defaults < env < flags`` needs no code of ours and no default is written twice.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Optional, TypeVar

import click
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from xiaoq.config import Settings

F = TypeVar("F", bound=Callable[..., Any])


def flag_of(name: str) -> Optional[str]:
    """The CLI flag declared for a Settings field (e.g. ``--max-tokens``), or None."""
    extra = Settings.model_fields[name].json_schema_extra
    return extra.get("flag") if isinstance(extra, dict) else None  # type: ignore[return-value]


def env_of(name: str) -> str:
    """The environment variable of a Settings field."""
    return f"XIAOQ_{name.upper()}"


def _base_type(annotation: Any) -> Any:
    """``Optional[int]`` -> ``int``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _default_text(field: FieldInfo) -> Optional[str]:
    """What the help shows as the default (factories are evaluated: e.g. this machine's cores)."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined or field.default is None:
        return None
    else:
        value = field.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value)) or None
    text = str(value).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


class TwoWordAuth(click.Option):
    """``--auth trusted-header NAME``: the mode takes the header's name as a second word (the other
    modes are one word). Click options have a fixed number of values, so the word after
    ``trusted-header`` is taken here; the setting holds both (``XIAOQ_AUTH="trusted-header NAME"``)."""

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for opt in self.opts:
            option = parser._long_opt.get(opt)
            if option is None:
                continue
            process = option.process

            def two_words(value: Any, state: Any, process: Any = process) -> None:
                if value == "trusted-header" and state.rargs and not state.rargs[0].startswith("-"):
                    value = f"{value} {state.rargs.pop(0)}"
                process(value, state)

            option.process = two_words


def option_decls(name: str, *, flag: Optional[str] = None, help: Optional[str] = None) -> tuple[list[str], dict[str, Any]]:
    """``click.option`` arguments for the Settings field ``name``; its value lands in kwargs as ``name``.

    ``flag`` and ``help`` override the field's own (``chat --system`` is the field ``system_prompt``).
    """
    field = Settings.model_fields[name]
    flag = flag or flag_of(name)
    if not flag:
        raise ValueError(f"setting {name} declares no CLI flag")
    default = _default_text(field)
    text = (help or field.description or "").rstrip(".")
    text += f"  [env: {env_of(name)}" + (f"; default: {default}]" if default is not None else "]")
    typ = _base_type(field.annotation)
    decls = [flag, name]
    if typing.get_origin(typ) is list:  # repeatable; each value may also hold commas
        return decls, {"multiple": True, "default": None, "metavar": "TEXT", "help": text + " (repeatable)"}
    if typ is bool:
        return decls, ({"default": None, "help": text} if "/" in flag else {"is_flag": True, "default": None, "help": text})
    if typing.get_origin(typ) is typing.Literal:  # a closed set: click lists the choices in --help
        return decls, {"type": click.Choice([str(a) for a in typing.get_args(typ)]), "default": None, "help": text}
    click_type: Any = click.Path(path_type=Path) if typ is Path else {int: int, float: float}.get(typ, str)
    metavar = {int: "INT", float: "FLOAT", Path: "PATH"}.get(typ, "TEXT")
    if name == "auth":
        return decls, {"cls": TwoWordAuth, "default": None, "metavar": "none|key|accounts|trusted-header NAME", "help": text}
    return decls, {"type": click_type, "default": None, "metavar": metavar, "help": text}


def settings_options(
    names: Optional[Iterable[str]] = None,
    *,
    exclude: Iterable[str] = (),
    flags: Mapping[str, str] = {},
    helps: Mapping[str, str] = {},
) -> Callable[[F], F]:
    """Decorator adding the options of these Settings fields (default: every field with a flag).

    ``flags`` / ``helps`` rename or re-describe some fields for one command.
    """
    skip = set(exclude)
    chosen = [n for n in (names if names is not None else Settings.model_fields) if n not in skip and (flags.get(n) or flag_of(n))]

    def decorate(f: F) -> F:
        # click collects decorators bottom-up; reversing keeps --help in the model's field order.
        for name in reversed(chosen):
            decls, kwargs = option_decls(name, flag=flags.get(name), help=helps.get(name))
            f = click.option(*decls, **kwargs)(f)
        return f

    return decorate


def build_settings(given: Mapping[str, Any], flags: Mapping[str, str] = {}) -> Settings:
    """Settings from the flags the user gave (None = not given) over env vars over defaults.

    A bad value, from a flag or from the environment, becomes one :class:`click.UsageError` line
    naming the flag and the env var (exit status 2).
    """
    kwargs = {k: v for k, v in given.items() if v is not None and v != () and k in Settings.model_fields}
    try:
        return Settings(**kwargs)
    except ValidationError as e:
        raise click.UsageError(describe_validation_error(e, given=kwargs, flags=flags)) from None


def describe_validation_error(e: ValidationError, given: Mapping[str, Any] = {}, flags: Mapping[str, str] = {}) -> str:
    """One line for every problem: ``invalid --port (XIAOQ_PORT) 70000: Input should be ...``."""
    parts = []
    for err in e.errors():
        name = str(err["loc"][0]) if err.get("loc") else ""
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        where = f"{flags.get(name) or flag_of(name) or name} ({env_of(name)})" if name in Settings.model_fields else (name or "settings")
        source = "" if name in given else " from the environment"
        value = err.get("input")
        shown = f" {value!r}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
        parts.append(f"invalid {where}{source}{shown}: {msg}")
    return "; ".join(parts)
