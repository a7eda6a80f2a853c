"""Accounts over HTTP: log in and out, who am I, personal API keys, and the admin's user list.

Mounted only with ``--auth accounts`` or ``--auth trusted-header``. The session cookie is
``HttpOnly`` (page scripts never see it), ``SameSite=Strict`` (no other site's page sends it) and
``Secure`` over HTTPS. An admin manages users here as ``xiaoq user`` does on the command line; the
first admin is made on the command line only, never by a visitor.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, Optional

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from xiaoq.api.auth import SESSION_COOKIE, session_token
from xiaoq.api.errors import error_responses
from xiaoq.api.fields import Text
from xiaoq.auth.accounts import Accounts, check_groups, check_role
from xiaoq.auth.types import User
from xiaoq.errors import Forbidden, InvalidRequest, Unauthorized

router = APIRouter(tags=["accounts"], responses=error_responses(401, 403, 404, 409, 429))

Username = Annotated[str, Path(min_length=1, max_length=64)]


def get_accounts(request: Request) -> Accounts:
    return request.app.state.accounts


def current_user(request: Request) -> User:
    user = request.scope.get("xiaoq.user")
    if user is None:
        raise Unauthorized("Log in first (POST /api/auth/login).", code="login_required")
    return user


def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("Only an administrator may do this.", code="admin_only")
    return user


AccountsDep = Annotated[Accounts, Depends(get_accounts)]
UserDep = Annotated[User, Depends(current_user)]
AdminDep = Annotated[User, Depends(admin_user)]


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=1024)


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field("", max_length=100)


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: Text = Field(min_length=1, max_length=1024)
    new_password: Text = Field(min_length=1, max_length=1024)


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=1024)
    role: Literal["admin", "user"] = "user"
    groups: list[Text] = Field(default_factory=list, max_length=100)


class UserChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: Optional[Text] = Field(None, min_length=1, max_length=1024)
    role: Optional[Literal["admin", "user"]] = None
    groups: Optional[list[Text]] = Field(None, max_length=100)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


# ---- sessions -------------------------------------------------------------------------------------
@router.post("/api/auth/login")
async def login(body: LoginBody, request: Request, accounts: AccountsDep) -> JSONResponse:
    if request.app.state.settings.auth_mode() != "accounts":
        raise InvalidRequest("Passwords are not used here: the sign-in proxy says who you are.", code="login_not_available")
    user, token = await asyncio.to_thread(accounts.login, body.username, body.password, _client(request))
    response = JSONResponse({"user": user.public()})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(accounts.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/api/auth/logout", status_code=204)
async def logout(request: Request, accounts: AccountsDep) -> Response:
    token = session_token(request.scope)
    if token:
        await asyncio.to_thread(accounts.logout, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/api/auth/me")
async def me(user: UserDep) -> dict[str, Any]:
    return {"user": user.public()}


@router.post("/api/auth/password", status_code=204)
async def change_password(body: PasswordBody, request: Request, user: UserDep, accounts: AccountsDep) -> Response:
    """A new password for oneself; the old one is asked again (a borrowed session is not enough)."""
    await asyncio.to_thread(accounts.login, user.username, body.old_password, _client(request))
    await asyncio.to_thread(accounts.set_password, user, body.new_password)
    return Response(status_code=204)


# ---- personal API keys --------------------------------------------------------------------------
@router.get("/api/auth/keys")
async def list_keys(user: UserDep, accounts: AccountsDep) -> dict[str, Any]:
    return {"data": await asyncio.to_thread(accounts.users.list_keys, user.id)}


@router.post("/api/auth/keys", status_code=201)
async def create_key(user: UserDep, accounts: AccountsDep, body: Optional[KeyBody] = None) -> dict[str, Any]:
    """A new key: the answer holds it once (``key``); only its first characters are kept visible."""
    record, key = await asyncio.to_thread(accounts.new_key, user, (body or KeyBody()).name)
    return {**record, "key": key}


@router.delete("/api/auth/keys/{key_id}", status_code=204)
async def revoke_key(key_id: int, user: UserDep, accounts: AccountsDep) -> Response:
    await asyncio.to_thread(accounts.users.revoke_key, user.id, key_id)
    return Response(status_code=204)


# ---- administration -----------------------------------------------------------------------------
@router.get("/api/admin/users")
async def list_users(admin: AdminDep, accounts: AccountsDep) -> dict[str, Any]:
    return {"data": [u.public() for u in await asyncio.to_thread(accounts.users.list_users)]}


@router.post("/api/admin/users", status_code=201)
async def create_user(body: NewUserBody, admin: AdminDep, accounts: AccountsDep) -> dict[str, Any]:
    user = await asyncio.to_thread(accounts.create, body.username, body.password, body.role, body.groups)
    return user.public()


@router.patch("/api/admin/users/{username}")
async def update_user(username: Username, body: UserChangeBody, admin: AdminDep, accounts: AccountsDep) -> dict[str, Any]:
    target = await asyncio.to_thread(accounts.users.by_name, username)
    if target.id == admin.id and body.role == "user":
        raise InvalidRequest("An administrator cannot take away their own admin role.", code="last_admin")
    if body.password is not None:
        await asyncio.to_thread(accounts.set_password, target, body.password)
    groups = check_groups(body.groups) if body.groups is not None else None
    role = check_role(body.role) if body.role is not None else None
    changed = await asyncio.to_thread(accounts.users.update_user, target.id, role=role, groups=groups)
    return changed.public()


@router.delete("/api/admin/users/{username}", status_code=204)
async def delete_user(username: Username, admin: AdminDep, accounts: AccountsDep) -> Response:
    target = await asyncio.to_thread(accounts.users.by_name, username)
    if target.id == admin.id:
        raise InvalidRequest("An administrator cannot remove their own account.", code="last_admin")
    await asyncio.to_thread(accounts.users.remove_user, target.id)
    return Response(status_code=204)
