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
def pull(quant: str, source: str, repo: Optional[str], filename: Optional[str]) -> None:
    """Download Qwen2.5-0.5B-Instruct GGUF (resumable, with a progress bar)."""
    from xiaoq.engine.download import pull as download

    try:
        path = download(quant=quant, source=source, repo=repo, filename=filename)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: run `xiaoq pull` again to resume the download") from None
    click.echo(f"model ready: {path}")
