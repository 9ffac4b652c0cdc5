"""Durable exporter snapshots: the latest good sample table per config, kept columnar (Arrow IPC).

Scale-to-zero exporters keep nothing in memory: a snapshot is written whole to a temporary name and
then swapped in, so a reader sees the old or the new snapshot, never half of one. Locally it lives in
files under the state dir; in a cluster in the database (`DatabaseSnapshotStore`, chunked IPC bytes).

A writer killed mid-snapshot (SIGKILL, OOM, a node gone) leaves its temporary file behind, hundreds of
MB for a large export. The file store sweeps them when it starts (`sweep_stale_temporaries`): a
temporary file's name carries its writer's host and pid (`.tmp-<host>-<pid>-<random>.arrow`), and it is
removed when that writer is known dead (same host, no such process, or our own pid but not a file this
process is writing: a restarted container reuses its pid) or when nobody wrote to it for an hour (a
live writer writes continuously; this covers other hosts sharing the directory, reused pids and
files of older versions). Two exporters sharing one state dir never remove each other's live files.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from functions.clients.db import Database
from functions.errors import FieldError, InvalidInput
from functions.logs import get_logger
from functions.models import paths

_CHUNK = 1 << 20  # bytes per streamed piece / database chunk


@dataclass(frozen=True)
class SnapshotInfo:
    key: str
    rows: int
    bytes: int


class SnapshotStore(Protocol):
    def write(self, key: str, batches: Iterable[pa.RecordBatch], metadata: dict[str, str]) -> SnapshotInfo: ...
    def read_ipc(self, key: str) -> Iterator[bytes] | None: ...
    def read(self, key: str) -> Iterator[pa.RecordBatch] | None: ...


def _align(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Give a later page the first page's columns; new columns mid-snapshot are refused."""
    if batch.schema.equals(schema, check_metadata=False):
        return batch
    extra = [n for n in batch.schema.names if n not in schema.names]
    if extra:
        raise InvalidInput("pages of one payload have different columns", [FieldError(n, "column not in the first page") for n in extra])
    cols = [batch.column(n) if n in batch.schema.names else pa.nulls(batch.num_rows, f.type) for n, f in zip(schema.names, schema, strict=True)]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def write_ipc_stream(sink: pa.NativeFile | object, batches: Iterable[pa.RecordBatch], metadata: dict[str, str]) -> int:
    """Write batches as one IPC stream with the metadata on its schema; returns the row count."""
    it = iter(batches)
    first = next(it, None)
    schema = (first.schema if first is not None else pa.schema([("__name__", pa.string()), ("__value__", pa.float64())]))
    kept = {k: v for k, v in (schema.metadata or {}).items() if k != b"finops.rows"}  # per-batch, not the total
    schema = schema.with_metadata({**kept, **{k.encode(): v.encode() for k, v in metadata.items()}})
    rows = 0
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in ([first] if first is not None else []):
            writer.write_batch(_align(batch, schema))
            rows += batch.num_rows
        for batch in it:
            writer.write_batch(_align(batch, schema))
            rows += batch.num_rows
    return rows


STALE_AFTER_S = 3600.0
"""A temporary snapshot file nobody wrote to for this long is a dead writer's (a live one writes
continuously: the export's payload is already on local disk when the snapshot is written)."""

_TMP_PREFIX = ".tmp-"
_TMP_NAME = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9-]*)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.arrow$")
_WRITING: set[str] = set()
"""Temporary files this process is writing right now (the sweep never removes them)."""
_WRITING_LOCK = threading.Lock()


def _host() -> str:
    """This host's name as it goes into a temporary file's name (letters, digits and '-')."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale(path: Path, now: float, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a temporary snapshot file is a dead writer's (see the module docstring for the rule)."""
    try:
        age = now - path.lstat().st_mtime
    except FileNotFoundError:
        return False  # its writer swapped it in meanwhile
    if age > stale_after_s:
        return True
    match = _TMP_NAME.match(path.name)
    if match is None or match["host"] != _host():
        return False  # another host's (or an older version's) file: only age says it is dead
    pid = int(match["pid"])
    if pid == os.getpid():
        with _WRITING_LOCK:
            return str(path) not in _WRITING
    return not _alive(pid)


def sweep_stale_temporaries(root: Path, now: float | None = None, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary snapshot files dead writers left under `root`; returns what was removed.
    Best effort: a file that cannot be removed is left for the next start."""
    root = Path(os.path.realpath(root))  # the names _WRITING holds are resolved ones
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in root.rglob(f"{_TMP_PREFIX}*.arrow"):
        if path.is_symlink() or not path.is_file() or not is_stale(path, now, stale_after_s):
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed.append(path)
        get_logger("storage.snapshots").warning("removed a stale temporary snapshot file",
                                                extra={"path": str(path), "bytes": size})
    return removed


class FileSnapshotStore:
    """One Arrow IPC stream file per config under <state>/snapshots, replaced atomically.

    The key (`<Kind>/<namespace>/<name>`, names already checked by ConfigRef) is checked again as a
    path: each part one plain file name, the resolved file inside the root (symlinks included), else
    InvalidInput naming `config`. Stale temporary files are swept once, when the store is made."""

    def __init__(self, root: Path, stale_after_s: float = STALE_AFTER_S) -> None:
        self.root = Path(root)
        self.swept = sweep_stale_temporaries(self.root, stale_after_s=stale_after_s)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        return paths.inside(self.root, *parts[:-1], paths.file_name(parts[-1], ".arrow"), field="config")

    def write(self, key: str, batches: Iterable[pa.RecordBatch], metadata: dict[str, str]) -> SnapshotInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{_host()}-{os.getpid()}-", suffix=".arrow", dir=path.parent)
        with _WRITING_LOCK:
            _WRITING.add(tmp)
        try:
            with os.fdopen(fd, "wb") as fh, pa.output_stream(fh) as sink:
                rows = write_ipc_stream(sink, batches, {**metadata, "finops.config": key})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            with _WRITING_LOCK:
                _WRITING.discard(tmp)
        return SnapshotInfo(key, rows, path.stat().st_size)

    def read_ipc(self, key: str) -> Iterator[bytes] | None:
        path = self._path(key)
        try:
            fh = path.open("rb")  # an open handle survives a concurrent os.replace
        except FileNotFoundError:
            return None

        def chunks() -> Iterator[bytes]:
            with fh:
                while piece := fh.read(_CHUNK):
                    yield piece

        return chunks()

    def read(self, key: str) -> Iterator[pa.RecordBatch] | None:
        path = self._path(key)
        if not path.exists():
            return None
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
        return _batches(reader)


class DatabaseSnapshotStore:
    """Snapshots in the database for stateless instances: chunks under a new version, then a head swap."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS finops_snapshot_chunks (key STRING, version STRING, chunk INTEGER, data TEXT)",
        "CREATE TABLE IF NOT EXISTS finops_snapshot_heads (key STRING PRIMARY KEY, version STRING, rows BIGINT)",
    )

    def __init__(self, db: Database) -> None:
        self.db = db
        for stmt in self._DDL:
            self.db.execute(stmt)

    def write(self, key: str, batches: Iterable[pa.RecordBatch], metadata: dict[str, str]) -> SnapshotInfo:
        sink = pa.BufferOutputStream()
        rows = write_ipc_stream(sink, batches, {**metadata, "finops.config": key})
        data = sink.getvalue().to_pybytes()
        version = uuid.uuid4().hex
        chunks = [[key, version, i, base64.b64encode(data[o:o + _CHUNK]).decode()] for i, o in enumerate(range(0, max(len(data), 1), _CHUNK))]
        self.db.executemany("INSERT INTO finops_snapshot_chunks (key, version, chunk, data) VALUES (?, ?, ?, ?)", chunks)
        self.db.execute("REFRESH TABLE finops_snapshot_chunks")
        self.db.execute(
            "INSERT INTO finops_snapshot_heads (key, version, rows) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET version = excluded.version, rows = excluded.rows",
            [key, version, rows],
        )
        self.db.execute("REFRESH TABLE finops_snapshot_heads")
        self.db.execute("DELETE FROM finops_snapshot_chunks WHERE key = ? AND version <> ?", [key, version])
        return SnapshotInfo(key, rows, len(data))

    def read_ipc(self, key: str) -> Iterator[bytes] | None:
        head = self.db.execute("SELECT version FROM finops_snapshot_heads WHERE key = ?", [key])
        if not head.rows:
            return None
        version = head.rows[0][0]
        res = self.db.execute("SELECT data FROM finops_snapshot_chunks WHERE key = ? AND version = ? ORDER BY chunk", [key, version])
        return (base64.b64decode(row[0]) for row in res.rows)

    def read(self, key: str) -> Iterator[pa.RecordBatch] | None:
        pieces = self.read_ipc(key)
        if pieces is None:
            return None
        return _batches(pa.ipc.open_stream(pa.py_buffer(b"".join(pieces))))


def _batches(reader: pa.ipc.RecordBatchStreamReader) -> Iterator[pa.RecordBatch]:
    yield from reader
