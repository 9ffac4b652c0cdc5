"""JSON from outside, parsed with a nesting limit: `[[[[…]]]]` is a 400 naming the depth, never a 500.

Why: the stdlib parser (and the cloudevents SDK, which uses it) recurses once per level and raises
RecursionError near 1,000 levels; orjson stops at 1,024; what we do with a parsed value afterwards
(json.dumps of a nested cell, pydantic, orjson.dumps, which stops at 255) recurses too. No payload we
read (CloudEvents, CRs, cost API pages, AI usage events) nests anywhere near MAX_DEPTH.

`check_depth` runs before any parser and cannot overflow: it never recurses. It drops escaped
characters and string contents with bytes operations, then takes the running sum of the brackets
left (C-level iterators), so it keeps up with orjson on multi-MB bodies.
"""

from __future__ import annotations

from itertools import accumulate, repeat
from operator import sub
from typing import Any

import orjson

from functions.errors import FieldError, InvalidInput

MAX_DEPTH = 128
"""Deepest nesting accepted (arrays and objects count alike; a scalar at top level is depth 0)."""

_KEEP_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')  # every byte but quotes and brackets
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # open -> +1, close -> -1 (after subtracting 1)


def depth(data: bytes | bytearray | memoryview | str) -> int:
    """The deepest nesting of arrays and objects in JSON text (valid or not), brackets inside strings ignored."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if b"\\" in raw:  # escapes first, left to right: `\\` before `\"`, so `\\"` still ends a string
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(None, _KEEP_STRUCTURE)
    outside = b"".join(structure.split(b'"')[0::2])  # every other piece between quotes is a string
    return max(0, max(accumulate(map(sub, outside.translate(_STEPS), repeat(1))), default=0))


def too_deep(data: bytes | bytearray | memoryview | str, max_depth: int = MAX_DEPTH) -> int | None:
    """The depth when `data` nests deeper than `max_depth`, else None (cheap when it has few brackets)."""
    if isinstance(data, str):
        brackets = data.count("[") + data.count("{")
    else:
        raw = data.tobytes() if isinstance(data, memoryview) else data
        brackets = raw.count(b"[") + raw.count(b"{")
    if brackets <= max_depth:
        return None  # cannot nest deeper than it has brackets
    found = depth(data)
    return found if found > max_depth else None


def check_depth(data: bytes | bytearray | memoryview | str, max_depth: int = MAX_DEPTH, where: str = "body") -> None:
    """InvalidInput (400) naming the depth and the limit when `data` nests deeper than `max_depth`."""
    found = too_deep(data, max_depth)
    if found is not None:
        raise InvalidInput(f"JSON nested {found} levels deep; the limit is {max_depth}",
                           [FieldError(where, f"nesting depth {found} > {max_depth}")])


def loads(data: bytes | bytearray | memoryview | str, max_depth: int = MAX_DEPTH, where: str = "body") -> Any:
    """orjson.loads after the nesting check; JSONDecodeError (a ValueError) for text that is not JSON."""
    check_depth(data, max_depth, where)
    return orjson.loads(data)
