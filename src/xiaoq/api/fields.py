"""Field types shared by the request models.

``Int``, ``Float`` and ``Bool`` take JSON's own types only: pydantic's lax mode would read
``false`` as the seed 0 or ``0`` as ``stream: false``, so a client's mistake would silently become
a different request. (A float field still takes an integer: JSON does not tell them apart.)

``Text`` refuses NUL characters: JSON allows ``\\u0000`` in a string, but no chat text means one,
and below the API it is an end of string for C code (llama.cpp's tokenizer and template renderer,
terminals, log collectors), so the text a client sent and the text the model saw could differ.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Strict


def reject_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


Text = Annotated[str, AfterValidator(reject_nul)]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
