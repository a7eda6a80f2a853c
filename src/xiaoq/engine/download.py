"""``xiaoq pull``: fetch the default GGUF into the standard model cache.

Hugging Face: the file lands in the standard hub cache layout (``blobs/<etag>``,
``snapshots/<commit>/<file>`` linking to it, ``refs/main``), where every other tool (and
:func:`xiaoq.engine.models.resolve_model`) looks; ``HF_HUB_CACHE`` / ``HF_HOME`` are honoured and
``HF_ENDPOINT`` selects a mirror (e.g. https://hf-mirror.com). ModelScope, which users in mainland
China reach more easily, is an optional extra imported only when asked for.

Why the Hugging Face transfer is written here rather than left to ``hf_hub_download``:
``huggingface_hub`` (2.x) throws a partial download away when the process ends, which is hard on a
400 MB file over a poor link, and it turns the server's ``ETag`` and ``X-Repo-Commit`` into path
components unchecked, so a hostile mirror sending ``ETag: "../../../.bashrc"`` would choose where
it writes. Here the metadata is asked for once and validated (:func:`checked_metadata`: the ETag
is a git sha1 or a sha256, the commit a sha1, the file URL http(s)); every path is confined under
the cache (:func:`confined`); the bytes go to ``blobs/<etag>.xiaoq-partial``, kept across runs and
continued with an HTTP Range request, checked against a sha256 ETag; then the snapshot link and the
ref are written as the hub library writes them.

Every failure becomes one :class:`~xiaoq.errors.ModelError` sentence; the CLI prints it and exits 1.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import BinaryIO, Optional
from urllib.parse import urlparse

from xiaoq.config import DEFAULT_MODELSCOPE_REPO, DEFAULT_QUANT, DEFAULT_REPO
from xiaoq.engine.models import check_quant, default_filename, find_in_hf_cache, hf_hub_cache, validate_gguf
from xiaoq.errors import ModelError

SOURCES: tuple[str, ...] = ("huggingface", "modelscope")
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def hf_endpoint() -> str:
    """The hub to download from, read at call time (huggingface_hub reads it once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def pull(quant: str = DEFAULT_QUANT, source: str = "huggingface", repo: Optional[str] = None, filename: Optional[str] = None) -> Path:
    """Download (or find already cached) the model file and return its validated local path.

    ``repo`` defaults to the Qwen2.5-0.5B-Instruct GGUF repo of ``source``; ``filename`` defaults to
    ``qwen2.5-0.5b-instruct-{quant}.gguf``.
    """
    if source not in SOURCES:
        raise ModelError(f"unknown source {source!r}: choose {' or '.join(SOURCES)}")
    quant = check_quant(quant)
    filename = filename or default_filename(quant)
    if source == "modelscope":
        path = _pull_modelscope(repo or DEFAULT_MODELSCOPE_REPO, filename)
    else:
        path = _pull_huggingface(repo or DEFAULT_REPO, filename)
    return validate_gguf(path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _is_network_error(e: BaseException) -> bool:
    """Connection refused, DNS failure, timeout, proxy trouble: the exception types differ across
    huggingface_hub's HTTP backends (requests, httpx), so match the family by name and walk the chain."""
    seen: set[int] = set()
    cur: Optional[BaseException] = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        names = {c.__name__ for c in type(cur).__mro__}
        if names & {"TransportError", "ConnectError", "TimeoutException", "NetworkError", "ProxyError",
                    "ConnectionError", "gaierror", "TimeoutError", "OfflineModeIsEnabled"}:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _pull_huggingface(repo: str, filename: str) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hf_endpoint()
    where = f"{repo}/{filename} from {endpoint}"
    try:
        # One metadata request without retries: a user without network gets one line at once.
        meta = get_hf_file_metadata(hf_hub_url(repo, filename, endpoint=endpoint), timeout=15)
        return _store_in_cache(meta, repo, filename, endpoint, where)
    except ModelError:
        raise
    except GatedRepoError:
        raise ModelError(f"cannot download {where}: the repository is gated (log in with `hf auth login`).") from None
    except RepositoryNotFoundError:
        raise ModelError(f"cannot download {where}: repository {repo} not found.") from None
    except RevisionNotFoundError:
        raise ModelError(f"cannot download {where}: revision not found.") from None
    except EntryNotFoundError:
        raise ModelError(f"cannot download {where}: the repository has no file {filename} (check --quant).") from None
    except HfHubHTTPError as e:
        raise ModelError(f"cannot download {where}: {_first_line(e)}") from None
    except Exception as e:
        if _is_network_error(e):
            cached = find_in_hf_cache(repo, filename)
            if cached is not None:  # offline but already pulled: nothing to do
                return cached
            raise ModelError(
                f"cannot download {where}: {_first_line(e) or 'network unreachable'}. Check the network, set HF_ENDPOINT "
                "to a reachable mirror (e.g. HF_ENDPOINT=https://hf-mirror.com) or use `xiaoq pull --source modelscope`."
            ) from None
        # disk full, size mismatch after retries, unwritable cache, ...
        raise ModelError(f"download of {where} failed: {type(e).__name__}: {_first_line(e)}") from None


def _store_in_cache(meta: object, repo: str, filename: str, endpoint: str, where: str) -> Path:
    """Validate the hub's answer, download the blob, link the snapshot; the snapshot path."""
    m = meta  # huggingface_hub.HfFileMetadata
    etag, commit, url, size = checked_metadata(m.etag, m.commit_hash, m.location, m.size, where)  # type: ignore[attr-defined]
    cache = hf_hub_cache()
    storage = cache / ("models--" + repo.replace("/", "--"))
    blob = confined(storage / "blobs" / etag, cache)
    pointer = confined(storage / "snapshots" / commit / filename, cache)
    _fetch_resumable(url, size, blob, filename, send_token=_same_host(url, endpoint))
    _link_snapshot(blob, pointer, confined(storage / "refs" / "main", cache), commit)
    return pointer


PARTIAL_SUFFIX = ".xiaoq-partial"
_MAX_FAILURES = 5  # consecutive transfer failures without a byte of progress before giving up (15 s)


_ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # git blob sha1 (small files) or sha256 (LFS / Xet)
_COMMIT = re.compile(r"[0-9a-f]{40}")


def checked_metadata(etag: Optional[str], commit: Optional[str], location: Optional[str], size: Optional[int], where: str) -> tuple[str, str, str, int]:
    """The server's answer, or a :class:`ModelError` naming what is wrong with it. ``etag`` arrives
    with quotes and ``W/`` already stripped by huggingface_hub; they are stripped again here so
    nothing depends on that."""
    clean = (etag or "").strip()
    clean = clean[2:] if clean.startswith("W/") else clean
    clean = clean.strip('"')
    if not _ETAG.fullmatch(clean):
        raise ModelError(f"cannot download {where}: the server sent an invalid ETag {_shown(etag)} (expected 40 or 64 hex digits); nothing was written.")
    if not _COMMIT.fullmatch(commit or ""):
        raise ModelError(f"cannot download {where}: the server sent an invalid commit {_shown(commit)} (expected 40 hex digits); nothing was written.")
    if not location or urlparse(location).scheme not in ("http", "https"):
        raise ModelError(f"cannot download {where}: the server pointed to {_shown(location)}, not an http(s) URL; nothing was written.")
    if not size or size < 0:
        raise ModelError(f"cannot download {where}: the server did not say how large the file is.")
    return clean, commit, location, size  # type: ignore[return-value]


def _shown(value: Optional[str]) -> str:
    """A server-sent value, quoted and cut short, safe to print on one line."""
    return repr((value or "")[:80])


def confined(path: Path, root: Path) -> Path:
    """``path`` itself once it is known to resolve (``..`` and symlinks followed) inside ``root``."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise ModelError(f"refusing to write {path}: it resolves outside the model cache {root}.")
    return path


def _link_snapshot(blob: Path, pointer: Path, ref: Path, commit: str) -> None:
    """``snapshots/<commit>/<file>`` -> ``blobs/<etag>`` (relative, as huggingface_hub links it;
    a copy where symlinks are not allowed) and ``refs/main`` = the commit."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if not (pointer.is_file() and pointer.resolve() == blob.resolve()):
        tmp = pointer.with_name(pointer.name + PARTIAL_SUFFIX)
        tmp.unlink(missing_ok=True)
        try:
            tmp.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:
            shutil.copyfile(blob, tmp)
        os.replace(tmp, pointer)
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


def _same_host(url: str, endpoint: str) -> bool:
    """A token goes to the hub only, never to the CDN a large file is redirected to."""
    return urlparse(url).netloc == urlparse(endpoint).netloc


def _fetch_resumable(url: str, size: int, blob: Path, filename: str, send_token: bool = True) -> None:
    """Put the file's bytes at ``blob`` (``blobs/<etag>``, already validated and confined),
    resuming a partial file from any earlier run (huggingface_hub deletes its own at exit).

    Transfer failures are retried (with Range) while bytes keep arriving; when giving up, the
    partial file stays for the next ``xiaoq pull``. A sha256 etag (LFS/Xet files) is verified.
    """
    import fcntl

    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status
    from huggingface_hub.utils.tqdm import tqdm

    etag = blob.name
    if blob.exists():
        return
    blob.parent.mkdir(parents=True, exist_ok=True)
    part = blob.with_name(blob.name + PARTIAL_SUFFIX)
    with open(part, "ab") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelError(f"another `xiaoq pull` is downloading {filename} right now ({part})") from None
        if f.tell() > size:  # not ours to trust: start over
            _restart(f)
        failures = 0
        # disable=None: a bar on a terminal, none in logs and pipes (as huggingface_hub does).
        with tqdm(total=size, initial=f.tell(), unit="B", unit_scale=True, desc=filename, disable=None, name="huggingface_hub.http_get") as bar:
            while f.tell() < size:
                have = f.tell()
                headers = build_hf_headers()
                if not send_token:
                    headers.pop("authorization", None)
                headers["Accept-Encoding"] = "identity"  # byte ranges of the file itself, not of a gzip
                if have:
                    headers["Range"] = f"bytes={have}-"
                try:
                    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as r:
                        hf_raise_for_status(r)
                        if have and r.status_code != 206:  # the server ignored Range: from the start
                            _restart(f)
                            bar.reset(total=size)
                        for chunk in r.iter_bytes():
                            f.write(chunk)
                            f.flush()  # on disk as it arrives: a killed pull resumes from every byte received
                            bar.update(len(chunk))
                            failures = 0
                    if f.tell() == have:  # a clean but empty answer must not loop for ever
                        raise ConnectionError("the server sent no data")
                except Exception as e:
                    if _is_network_error(e) and failures < _MAX_FAILURES:
                        failures += 1
                        bar.write(f"connection lost ({_first_line(e)}); resuming at {f.tell():,} bytes…", file=sys.stderr)
                        time.sleep(failures)
                        continue
                    f.flush()
                    if not f.tell():
                        raise  # nothing to resume: the caller explains the error
                    raise ModelError(
                        f"download of {filename} stopped at {f.tell():,} of {size:,} bytes ({_first_line(e)}); "
                        "the partial file is kept: run `xiaoq pull` again to resume."
                    ) from None
            f.flush()
        if f.tell() != size:
            got = f.tell()
            _restart(f)
            raise ModelError(f"download of {filename} is {got:,} bytes, expected {size:,}: run `xiaoq pull` again.")
        if re.fullmatch(r"[0-9a-f]{64}", etag) and _sha256(part) != etag:
            part.unlink()
            raise ModelError(f"download of {filename} is corrupt (sha256 mismatch) and was deleted: run `xiaoq pull` again.")
        os.replace(part, blob)


def _restart(f: BinaryIO) -> None:
    """Empty the partial file (append mode: the position must be moved back by hand)."""
    f.seek(0)
    f.truncate()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def _pull_modelscope(repo: str, filename: str) -> Path:
    try:
        from modelscope.hub.file_download import model_file_download  # type: ignore[import-not-found]
    except ImportError:
        raise ModelError("ModelScope downloads need the optional extra: pip install 'xiaoq[modelscope]'") from None
    try:
        return Path(model_file_download(model_id=repo, file_path=filename))
    except Exception as e:  # modelscope raises requests/HTTP/its own errors: all become one line
        raise ModelError(f"cannot download {repo}/{filename} from ModelScope: {type(e).__name__}: {_first_line(e)}") from None


#: Files of a model repository a directory model does not need.
_SNAPSHOT_SKIP = re.compile(r"(^|/)(\.gitattributes|[^/]*\.md|\.git/.*)$", re.I)
_MAX_SNAPSHOT_FILES = 64


def pull_snapshot(repo: str, source: str = "huggingface") -> Path:
    """Every file of ``repo`` (a model that is a whole directory, such as a faster-whisper ASR
    model) into the cache, each through the same resumable, validated transfer as the chat model;
    returns the snapshot directory."""
    if source not in SOURCES:
        raise ModelError(f"unknown source {source!r}: choose {' or '.join(SOURCES)}")
    if source == "modelscope":
        return _snapshot_modelscope(repo)
    files = _list_repo_files(repo)
    paths = [_pull_huggingface(repo, name) for name in files]
    return Path(str(paths[0])[: -len(files[0])].rstrip("/"))


def _list_repo_files(repo: str) -> list[str]:
    """The repository's file names (at ``main``), what a model directory does not need left out."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    where = f"{repo} from {hf_endpoint()}"
    try:
        names = HfApi(endpoint=hf_endpoint()).list_repo_files(repo)
    except RepositoryNotFoundError:
        raise ModelError(f"cannot download {where}: repository {repo} not found.") from None
    except HfHubHTTPError as e:
        raise ModelError(f"cannot download {where}: {_first_line(e)}") from None
    except Exception as e:
        if _is_network_error(e):
            raise ModelError(f"cannot download {where}: {_first_line(e) or 'network unreachable'}. Check the network or set HF_ENDPOINT to a reachable mirror.") from None
        raise ModelError(f"cannot list {where}: {type(e).__name__}: {_first_line(e)}") from None
    wanted = [n for n in names if not _SNAPSHOT_SKIP.search(n)]
    if not wanted:
        raise ModelError(f"cannot download {where}: the repository holds no model files.")
    if len(wanted) > _MAX_SNAPSHOT_FILES:
        raise ModelError(f"cannot download {where}: {len(wanted)} files is not one model directory.")
    return sorted(wanted)


def _snapshot_modelscope(repo: str) -> Path:
    try:
        from modelscope.hub.snapshot_download import snapshot_download  # type: ignore[import-not-found]
    except ImportError:
        raise ModelError("ModelScope downloads need the optional extra: pip install 'xiaoq[modelscope]'") from None
    try:
        return Path(snapshot_download(repo, ignore_file_pattern=[r".*\.md$", r"\.gitattributes$"]))
    except Exception as e:
        raise ModelError(f"cannot download {repo} from ModelScope: {type(e).__name__}: {_first_line(e)}") from None
