"""Presets ("assistants", ``docs/api.md`` "Presets"): list, create, edit, reset a built-in, delete.

A conversation copies a preset when it is created (``POST /api/conversations {"preset": id}``);
the routes here never touch conversations. The store is synchronous: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, Optional

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from xiaoq.api.deps import ConversationsDep
from xiaoq.api.errors import error_responses
from xiaoq.api.fields import Text
from xiaoq.api.routes_conversations import ConversationSettings
from xiaoq.chat.presets import BUILTINS
from xiaoq.errors import InvalidRequest

router = APIRouter(tags=["presets"], responses=error_responses(404))

ROUTE = "/api/presets"
PresetId = Annotated[str, Path(min_length=1, max_length=64)]
Language = Literal["zh", "en"]


class PresetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Optional[Text] = Field(None, min_length=1, max_length=100)
    description: Optional[Text] = Field(None, max_length=500)
    system_prompt: Optional[Text] = Field(None, max_length=20_000, description="null: the server's default prompt")
    settings: Optional[ConversationSettings] = None
    language: Optional[Language] = Field(None, description="UI language it is listed in; null: every language")
    visibility: Optional[Literal["everyone", "shared", "group", "private"]] = Field(
        None, description="who else may use it: everyone (also spelled shared, the stored name), one group, or nobody"
    )
    group: Optional[str] = Field(None, min_length=1, max_length=64, description="the group, with visibility group")

    def fields(self) -> dict[str, Any]:
        """The fields the client sent (a null ``system_prompt`` or ``language`` is a value)."""
        out = {k: getattr(self, k) for k in self.model_fields_set}
        if "settings" in out:
            out["settings"] = self.settings.model_dump(exclude_none=True) if self.settings else {}
        for required in ("name", "description", "visibility"):
            if required in out and out[required] is None:
                raise InvalidRequest(f"'{required}' cannot be null", code="invalid_field", param=required)
        if out.get("visibility") == "everyone":
            out["visibility"] = "shared"
        if "group" in out:
            out["group_name"] = out.pop("group")
        return out


@router.get(ROUTE)
async def list_presets(service: ConversationsDep, language: Annotated[Optional[Language], Query()] = None) -> dict[str, Any]:
    return {"data": await asyncio.to_thread(service.presets.list, language)}


@router.post(ROUTE, status_code=201)
async def create_preset(body: PresetBody, service: ConversationsDep) -> dict[str, Any]:
    fields = body.fields()
    if "name" not in fields:
        raise InvalidRequest("A preset needs a name.", code="invalid_field", param="name")
    return await asyncio.to_thread(service.presets.create, fields)


@router.get(ROUTE + "/{preset_id}")
async def get_preset(preset_id: PresetId, service: ConversationsDep) -> dict[str, Any]:
    return await asyncio.to_thread(service.presets.get, preset_id)


@router.patch(ROUTE + "/{preset_id}")
async def update_preset(preset_id: PresetId, body: PresetBody, service: ConversationsDep) -> dict[str, Any]:
    return await asyncio.to_thread(service.presets.update, preset_id, body.fields())


@router.post(ROUTE + "/{preset_id}/reset")
async def reset_preset(preset_id: PresetId, service: ConversationsDep) -> dict[str, Any]:
    """A built-in preset back to the text and settings XiaoQ ships."""
    return await asyncio.to_thread(service.presets.reset, preset_id, BUILTINS)


@router.delete(ROUTE + "/{preset_id}", status_code=204)
async def delete_preset(preset_id: PresetId, service: ConversationsDep) -> Response:
    await asyncio.to_thread(service.presets.delete, preset_id)
    return Response(status_code=204)
