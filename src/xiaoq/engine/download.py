"""``xiaoq pull``: fetch the default GGUF into the standard model cache.

Hugging Face goes through ``huggingface_hub.hf_hub_download``, so the file lands where every other
tool (and :func:`xiaoq.engine.models.resolve_model`) looks: ``HF_HUB_CACHE`` / ``HF_HOME`` are
honoured, ``HF_ENDPOINT`` selects a mirror (e.g. https://hf-mirror.com), a tqdm bar shows progress,
and a connection dropped mid-file is resumed with an HTTP Range request. ModelScope, which users in
mainland China reach more easily, is an optional extra imported only when asked for.

Every failure becomes one :class:`~xiaoq.errors.ModelError` sentence; the CLI prints it and exits 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from xiaoq.config import DEFAULT_MODELSCOPE_REPO, DEFAULT_QUANT, DEFAULT_REPO
from xiaoq.engine.models import check_quant, default_filename, find_in_hf_cache, hf_hub_cache, validate_gguf
from xiaoq.errors import ModelError

Source = Literal["huggingface", "modelscope"]
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
        if names & {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "ProxyError",
                    "ConnectionError", "gaierror", "TimeoutError", "OfflineModeIsEnabled"}:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _pull_huggingface(repo: str, filename: str) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hf_endpoint()
    where = f"{repo}/{filename} from {endpoint}"
    try:
        # One metadata request first: offline, hf_hub_download would retry with backoff for ~25 s
        # and log every attempt; a user without network deserves one line at once.
        get_hf_file_metadata(hf_hub_url(repo, filename, endpoint=endpoint), timeout=15)
        return Path(hf_hub_download(repo_id=repo, filename=filename, cache_dir=str(hf_hub_cache()), endpoint=endpoint))
    except GatedRepoError:
        raise ModelError(f"cannot download {where}: the repository is gated (log in with `hf auth login`).") from None
    except RepositoryNotFoundError:
        raise ModelError(f"cannot download {where}: repository {repo} not found.") from None
    except RevisionNotFoundError:
        raise ModelError(f"cannot download {where}: revision not found.") from None
    except EntryNotFoundError as e:
        if isinstance(e, LocalEntryNotFoundError):  # hf_hub_download: the hub vanished mid-way, nothing cached
            raise ModelError(f"cannot download {where}: {_first_line(e.__cause__ or e)}") from None
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


def _pull_modelscope(repo: str, filename: str) -> Path:
    try:
        from modelscope.hub.file_download import model_file_download  # type: ignore[import-not-found]
    except ImportError:
        raise ModelError("ModelScope downloads need the optional extra: pip install 'xiaoq[modelscope]'") from None
    try:
        return Path(model_file_download(model_id=repo, file_path=filename))
    except Exception as e:  # modelscope raises requests/HTTP/its own errors: all become one line
        raise ModelError(f"cannot download {repo}/{filename} from ModelScope: {type(e).__name__}: {_first_line(e)}") from None
