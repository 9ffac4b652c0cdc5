"""One check for every file path built from user data: resolved, it must stay inside its root.

Names from CRs, events and URLs become file names (the local CR store, snapshots, notebooks). The
name rules (functions.models.names) already keep '/', '..' and absolute paths out; this is the
second wall, for every caller and every future one: each part must be one plain path component,
and the joined path, with symlinks resolved on both sides, must lie under the resolved root. A
symlink planted inside the root that points out is refused the same way; nothing is followed.

It lives in functions.models, the lowest layer, so clients, storage, stages and local can all use
it. It reads no file contents: resolving a path only reads the links on the way (no network, no
database, as the models' layer contract requires).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from functions.errors import FieldError, InvalidInput

NAME_MAX = 255
"""Bytes in one file name on Linux file systems (ext4, xfs, tmpfs, overlayfs)."""


def part_problem(part: object) -> str | None:
    """Why `part` cannot be one path component, or None when it can."""
    if not isinstance(part, str):
        return f"must be a string, got {type(part).__name__}"
    if not part:
        return "must not be empty"
    if part in (".", ".."):
        return f"must not be {part!r}"
    if "/" in part or "\\" in part or "\0" in part:
        return "must not contain '/', '\\' or NUL"
    if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
        return f"must be at most {NAME_MAX} bytes"
    return None


def file_name(stem: str, suffix: str) -> str:
    """`stem + suffix`, or, when that passes the file system's 255 bytes (a 253-character Kubernetes
    name plus `.json`), the stem cut and a hash of the whole stem added: still one name per stem."""
    name = stem + suffix
    if len(name.encode("utf-8", "surrogatepass")) <= NAME_MAX:
        return name
    digest = hashlib.sha256(stem.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    keep = NAME_MAX - len(suffix) - len(digest) - 1
    return f"{stem.encode('utf-8', 'surrogatepass')[:keep].decode('utf-8', 'ignore')}-{digest}{suffix}"


def inside(root: Path | str, *parts: str, field: str = "name") -> Path:
    """root/part/part... under the resolved root; InvalidInput naming `field` when a part is not one
    plain component or when the path, symlinks followed, leaves the resolved root.

    The path returned is not itself resolved: replacing or unlinking it acts on the entry in the
    directory (a symlink is replaced, its target left alone); opening it follows only links that
    were just checked to stay inside."""
    for part in parts:
        problem = part_problem(part)
        if problem:
            raise InvalidInput(f"{field} cannot be used as a file name: it {problem}", [FieldError(field, problem)])
    base = Path(os.path.realpath(root))
    path = base.joinpath(*parts)
    real = Path(os.path.realpath(path))
    if real != base and not real.is_relative_to(base):
        raise InvalidInput(f"{field} leads outside its directory", [FieldError(field, "leads outside its directory")])
    return path
