"""Durable exporter snapshots: the latest good sample table per config, kept columnar (Arrow IPC).

Scale-to-zero exporters keep nothing in memory: a snapshot is written whole to a temporary name and
then swapped in, so a reader sees the old or the new snapshot, never half of one. Locally it lives in
files under the state dir; in a cluster in the database (`DatabaseSnapshotStore`, chunked IPC bytes).
"""

from __future__ import annotations

import base64
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from functions.clients.db import Database
from functions.errors import FieldError, InvalidInput

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


class FileSnapshotStore:
    """One Arrow IPC stream file per config under <state>/snapshots, replaced atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        safe = [part for part in key.split("/") if part not in ("", ".", "..")]
        return self.root.joinpath(*safe).with_suffix(".arrow")

    def write(self, key: str, batches: Iterable[pa.RecordBatch], metadata: dict[str, str]) -> SnapshotInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".arrow", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh, pa.output_stream(fh) as sink:
                rows = write_ipc_stream(sink, batches, {**metadata, "finops.config": key})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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
