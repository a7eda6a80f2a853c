"""``xiaoq user``: add, list, remove users and set passwords, in the database ``serve`` uses.

The first administrator is made here (``xiaoq user add NAME --admin``), never by the first visitor
of the web page; that first admin also receives the conversations kept before accounts were on.
A password is typed twice at a hidden prompt, or read from standard input (``--password-stdin``,
for scripts); never from an argument, which every local user could read in ``ps``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from xiaoq.cli.options import build_settings, settings_options

_DB_OPTIONS = ("data_dir", "db")


def _accounts(given: dict[str, Any]):  # type: ignore[no-untyped-def]
    from xiaoq.auth.accounts import Accounts
    from xiaoq.store import open_store
    from xiaoq.store.users import UserStore

    settings = build_settings(given)
    return Accounts(UserStore(open_store(settings.database()).db))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("user")
def user() -> None:
    """User accounts for `xiaoq serve --auth accounts`."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An administrator (manages users, knowledge bases and presets)")
@click.option("--group", "groups", multiple=True, help="A group the user belongs to (repeatable)")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input")
@settings_options(_DB_OPTIONS)
def add(name: str, admin: bool, groups: tuple[str, ...], password_stdin: bool, **given: Any) -> None:
    """Create user NAME."""
    accounts = _accounts(given)
    try:
        first = admin and accounts.users.first_admin() is None
        made = accounts.create(name, _password(password_stdin), "admin" if admin else "user", groups)
    finally:
        accounts.users.db.close()
    click.echo(f"user {made.username} added ({made.role})" + ("; the conversations kept before accounts are theirs" if first else ""))


@user.command("list")
@settings_options(_DB_OPTIONS)
def list_(**given: Any) -> None:
    """List the users: name, role, groups."""
    accounts = _accounts(given)
    try:
        for u in accounts.users.list_users():
            click.echo(f"{u.username}\t{u.role}\t{','.join(u.groups)}")
    finally:
        accounts.users.db.close()


@user.command("remove")
@click.argument("name")
@settings_options(_DB_OPTIONS)
def remove(name: str, **given: Any) -> None:
    """Remove user NAME with their conversations, sessions and keys."""
    accounts = _accounts(given)
    try:
        accounts.users.remove_user(accounts.users.by_name(name).id)
    finally:
        accounts.users.db.close()
    click.echo(f"user {name} removed")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input")
@settings_options(_DB_OPTIONS)
def passwd(name: str, password_stdin: bool, **given: Any) -> None:
    """Set user NAME's password (their logins end)."""
    accounts = _accounts(given)
    try:
        accounts.set_password(accounts.users.by_name(name), _password(password_stdin))
    finally:
        accounts.users.db.close()
    click.echo(f"password of {name} changed")
