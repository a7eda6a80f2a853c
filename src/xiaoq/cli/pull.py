"""``xiaoq pull``: download the default model into the standard cache."""

from __future__ import annotations

from typing import Optional

import click

from xiaoq.config import DEFAULT_QUANT
from xiaoq.engine.download import SOURCES
from xiaoq.engine.models import QUANTS


class Interrupted(click.ClickException):
    """Ctrl-C: the conventional status 130, and the partial download is kept."""

    exit_code = 130


@click.command()
@click.option("--quant", type=click.Choice(QUANTS, case_sensitive=False), default=DEFAULT_QUANT, show_default=True, help="Quantization to download")
@click.option("--source", type=click.Choice(SOURCES), default="huggingface", show_default=True, help="Where from: Hugging Face (honours HF_ENDPOINT, HF_HOME) or ModelScope (needs xiaoq[modelscope])")
@click.option("--repo", default=None, metavar="OWNER/NAME", help="Another repository (default: Qwen's Qwen2.5-0.5B-Instruct-GGUF); then --model OWNER/NAME:FILE uses it")
@click.option("--file", "filename", default=None, metavar="NAME.gguf", help="Another file of the repository (default: qwen2.5-0.5b-instruct-<quant>.gguf)")
@click.option("--asr", default=None, metavar="NAME", help="A speech recognition model instead: an alias (small, base, tiny, ...) or a repo id; then serve --asr-model NAME")
def pull(quant: str, source: str, repo: Optional[str], filename: Optional[str], asr: Optional[str]) -> None:
    """Download Qwen2.5-0.5B-Instruct GGUF (resumable, with a progress bar), or an ASR model."""
    from xiaoq.engine.download import pull as download

    if asr is not None:
        if repo or filename:
            raise click.UsageError("--asr fetches a whole model directory: it does not take --repo or --file")
        return _pull_asr(asr, source)
    try:
        path = download(quant=quant, source=source, repo=repo, filename=filename)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: run `xiaoq pull` again to resume the download") from None
    click.echo(f"model ready: {path}")


def _pull_asr(name: str, source: str) -> None:
    from xiaoq.engine.download import pull_snapshot
    from xiaoq.voice.models import asr_repo, resolve_asr_model

    try:
        path = pull_snapshot(asr_repo(name), source=source)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: run `xiaoq pull --asr {name}` again to resume the download") from None
    resolve_asr_model(str(path))  # a directory faster-whisper can load, or one line saying why not
    click.echo(f"ASR model ready: {path} (use it with `xiaoq serve --asr-model {name}`)")
