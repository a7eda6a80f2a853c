"""Knowledge bases over HTTP: ``/api/kb`` (create, list, delete), documents (multipart upload →
202 with a job id, list, delete), ingest jobs' progress, search, and the passage a citation opens.

Uploads are ingested by the one background job thread (:mod:`xiaoq.kb.jobs`); everything else is a
short blocking store call run in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, Optional

from fastapi import APIRouter, Depends, File, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from xiaoq.api.body_limits import UPLOAD_BODY
from xiaoq.api.deps import get_conversations, viewer_kbs
from xiaoq.api.errors import error_responses
from xiaoq.api.fields import Text
from xiaoq.errors import Conflict, InvalidRequest, NotFound, XiaoQError
from xiaoq.kb.jobs import JobRunner
from xiaoq.kb.service import KnowledgeBases
from xiaoq.kb.types import check_kb_name, conversation_scope

#: A row id: databases hold 64-bit integers, so a larger one is a 422, never a database error.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]

router = APIRouter(prefix="/api/kb", tags=["knowledge bases"], responses=error_responses(404, 409, 507))
#: A conversation's own files: a knowledge base of its own, gone with the conversation.
files_router = APIRouter(prefix="/api/conversations", tags=["knowledge bases"], responses=error_responses(404, 507))


def get_kbs(request: Request) -> KnowledgeBases:
    """The knowledge bases the asking user may see (all of them in the single-user modes)."""
    kbs = getattr(request.app.state, "kb", None)
    if kbs is None:
        raise XiaoQError("Knowledge bases need conversation storage, which is not enabled on this server.")
    return viewer_kbs(request, kbs)


def get_jobs(request: Request) -> JobRunner:
    return request.app.state.kb_jobs


KbsDep = Annotated[KnowledgeBases, Depends(get_kbs)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]


class NewKnowledgeBase(BaseModel):
    name: str = Field(..., max_length=64)
    description: str = Field("", max_length=2000)


class Sharing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    visibility: Literal["everyone", "group", "private"]
    group: Optional[str] = Field(None, min_length=1, max_length=64)


def _public_kb(kb: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "description", "document_count", "chunk_count", "created_at", "updated_at", "owner", "visibility", "group_name")
    return {k: kb[k] for k in keys}


@router.get("")
async def list_kbs(kbs: KbsDep) -> dict[str, Any]:
    rows = await asyncio.to_thread(kbs.store.list_kbs)
    return {"data": [_public_kb(r) for r in rows]}


@router.post("", status_code=201)
async def create_kb(body: NewKnowledgeBase, kbs: KbsDep) -> dict[str, Any]:
    name = check_kb_name(body.name)

    def create() -> dict[str, Any]:
        try:
            kbs.store.get_kb(name)
        except NotFound:
            return kbs.store.ensure_kb(name, description=body.description)
        raise Conflict(f"A knowledge base named {name!r} exists already.", code="kb_exists")

    return _public_kb(await asyncio.to_thread(create))


@router.patch("/{name}")
async def share_kb(name: str, body: Sharing, kbs: KbsDep) -> dict[str, Any]:
    """Who else may use it: everyone, one group, or only its owner (owner or admin only)."""
    return _public_kb(await asyncio.to_thread(kbs.store.share, check_kb_name(name), body.visibility, body.group))


@router.delete("/{name}", status_code=204)
async def delete_kb(name: str, kbs: KbsDep) -> Response:
    await asyncio.to_thread(kbs.store.delete_kb, check_kb_name(name))
    return Response(status_code=204)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    job = jobs.get(job_id)
    if job is None:
        raise NotFound(f"No ingest job with id {job_id!r}", code="job_not_found")
    return job.to_dict()


@router.get("/chunks/{chunk_id}")
async def get_chunk(chunk_id: RowId, kbs: KbsDep) -> dict[str, Any]:
    chunk = await asyncio.to_thread(kbs.store.get_chunk, chunk_id)
    return {k: chunk[k] for k in ("id", "kb", "document_id", "source", "title", "heading", "anchor", "page", "position", "text")}


@router.get("/{name}/documents")
async def list_documents(name: str, kbs: KbsDep) -> dict[str, Any]:
    kb = await asyncio.to_thread(kbs.store.get_kb, check_kb_name(name))
    return {"data": await asyncio.to_thread(kbs.store.list_documents, kb["id"])}


@router.post("/{name}/documents", status_code=202, openapi_extra=UPLOAD_BODY)
async def upload_documents(name: str, request: Request, kbs: KbsDep, jobs: JobsDep, files: list[UploadFile] = File(...)) -> JSONResponse:
    """Queue the uploaded files for ingest; 202 with the job to poll (the knowledge base is created when missing)."""
    check_kb_name(name)
    await asyncio.to_thread(kbs.store.ensure_kb, name)
    kb = await asyncio.to_thread(kbs.store.writable, name)
    job = await submit_uploads(kbs, jobs, kb, files)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/api/kb/jobs/{job.id}"})


async def submit_uploads(kbs: KnowledgeBases, jobs: JobRunner, kb: dict[str, Any], files: list[UploadFile]):  # type: ignore[no-untyped-def]
    """Read the uploads (already size-capped by the body limit) and queue one job for them."""
    if not files:
        raise InvalidRequest("No file in the upload: send multipart/form-data with one or more 'files' parts.")
    uploads = [(_upload_name(f.filename), await f.read()) for f in files]

    def work(report):  # type: ignore[no-untyped-def]
        ingestor = kbs.ingestor()
        total = None
        for source, data in uploads:
            p = ingestor.add_bytes(kb["id"], source, data)
            total = p if total is None else _merge(total, p)
            total.files_total = len(uploads)
            report(total)
        return total

    return jobs.submit(kb["name"], "upload", work)


def _merge(a: Any, b: Any) -> Any:
    for key in ("files_done", "added", "unchanged", "failed", "removed", "chunks"):
        setattr(a, key, getattr(a, key) + getattr(b, key))
    a.errors += b.errors
    a.documents += b.documents
    return a


def _upload_name(filename: Optional[str]) -> str:
    """The upload's base name (a client may send a path); the suffix picks the parser."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip().replace("\x00", "")
    if not name:
        raise InvalidRequest("An uploaded file has no name; the name's suffix (.pdf, .md, ...) says how to read it.")
    return name[:255]


@router.delete("/{name}/documents/{document_id}", status_code=204)
async def delete_document(name: str, document_id: RowId, kbs: KbsDep) -> Response:
    kb = await asyncio.to_thread(kbs.store.writable, check_kb_name(name))
    await asyncio.to_thread(kbs.store.delete_document, document_id, kb["id"])
    return Response(status_code=204)


@router.get("/{name}/search")
async def search(
    name: str,
    kbs: KbsDep,
    q: Text = Query(..., min_length=1, max_length=2000),
    k: int = Query(5, ge=1, le=50),
    mode: Literal["hybrid", "lexical", "dense"] = "hybrid",
) -> dict[str, Any]:
    kb = await asyncio.to_thread(kbs.store.get_kb, check_kb_name(name))
    hits = await asyncio.to_thread(kbs.retriever.search, [kb["id"]], q, k, mode)
    return {"data": [h.to_dict(q) for h in hits]}


async def _conversation_scope(request: Request, kbs: KnowledgeBases, conversation_id: str) -> dict[str, Any]:
    await get_conversations(request).get(conversation_id, messages=False)  # 404 unless the asker's own
    return await asyncio.to_thread(kbs.store.ensure_kb, conversation_scope(conversation_id), conversation_id)


@files_router.post("/{conversation_id}/files", status_code=202, openapi_extra=UPLOAD_BODY)
async def upload_files(conversation_id: str, request: Request, kbs: KbsDep, jobs: JobsDep, files: list[UploadFile] = File(...)) -> JSONResponse:
    """Attach files to a conversation (ingested in the background: 202 with the job to poll); its
    answers then draw on them, and "summarise this file" reads them whole."""
    scope = await _conversation_scope(request, kbs, conversation_id)
    job = await submit_uploads(kbs, jobs, scope, files)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/api/kb/jobs/{job.id}"})


@files_router.get("/{conversation_id}/files")
async def list_files(conversation_id: str, request: Request, kbs: KbsDep) -> dict[str, Any]:
    scope = await _conversation_scope(request, kbs, conversation_id)
    return {"data": await asyncio.to_thread(kbs.store.list_documents, scope["id"])}


@files_router.delete("/{conversation_id}/files/{document_id}", status_code=204)
async def delete_file(conversation_id: str, document_id: RowId, request: Request, kbs: KbsDep) -> Response:
    scope = await _conversation_scope(request, kbs, conversation_id)
    await asyncio.to_thread(kbs.store.delete_document, document_id, scope["id"])
    return Response(status_code=204)
