"""Field types shared by the request models.

``Text`` refuses NUL characters: JSON allows ``\\u0000`` in a string, but no chat text means one,
and below the API it is an end of string for C code (llama.cpp's tokenizer and template renderer,
terminals, log collectors), so the text a client sent and the text the model saw could differ.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def reject_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


Text = Annotated[str, AfterValidator(reject_nul)]
