"""An API response body -> all-string "source table" batches, dispatched like Krateo's exporter.

Dispatch is on the lower-cased Content-Type, by substring, in Krateo's order; we add Parquet and
gzip sniffing, and answer InvalidInput where Krateo's exporter panicked (a nil handler for any other content type).
CSV is streamed with bounded memory; JSON and gzip-wrapped Parquet are read whole. Every byte the
parsers get (after gunzip) is counted against the caller's `ByteBudget` (a gzip bomb stops at the
cap), and JSON nesting is limited (functions.codecs.json_limits) before any parser runs.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, BinaryIO, Literal

import orjson
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from functions.codecs import azure_monitor, focusconfig_json, generic_json, json_limits, prometheus_api
from functions.codecs._streams import BomTrimmer, ByteBudget, PeekReader, counted
from functions.codecs.focus_csv import read_csv
from functions.errors import FieldError, InvalidInput
from functions.models.crs import Generic

Format = Literal["csv", "json", "parquet"]
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_EMPTY: Mapping[str, str] = MappingProxyType({})


def payload_format(content_type: str, path: str) -> tuple[Format | None, bool]:
    """(format, gunzip) from the header and path; format None = decide by sniffing (octet streams).

    Raises InvalidInput for a content type Krateo has no handler for (it panicked).
    """
    ct = (content_type or "").lower()
    if "text/csv" in ct:
        return "csv", False
    if "application/json" in ct:
        return "json", False
    if any(t in ct for t in PARQUET_TYPES):
        return "parquet", False
    if "application/octet-stream" in ct:
        return None, False
    if "binary/octet-stream" in ct:
        return None, ".gz" in path.lower()
    raise InvalidInput(
        f"unsupported content type {content_type!r}: expected text/csv, application/json, "
        "application/octet-stream, binary/octet-stream or Parquet",
        [FieldError("Content-Type", f"no handler for {content_type!r}")],
    )


def _octet_format(path: str, head: bytes) -> Format:
    low = path.lower()
    if head.startswith(_PARQUET_MAGIC) or ".parquet" in low:
        return "parquet"
    if "csv" in low:
        return "csv"
    return "json" if "json" in low else "csv"


def read_payload(
    body: BinaryIO | bytes,
    content_type: str,
    path: str,
    metric_type: str,
    *,
    generic: Generic | None = None,
    additional_variables: Mapping[str, str] = _EMPTY,
    budget: ByteBudget | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the body as string batches. Content type and JSON are checked before returning;
    CSV errors (ragged row, missing BilledCost) and an exceeded `budget` are raised while iterating,
    and then invalidate everything already yielded."""
    fmt, gunzip = payload_format(content_type, path)
    raw = PeekReader(io.BytesIO(body).read if isinstance(body, bytes | bytearray | memoryview) else body.read)
    if gunzip or raw.peek(2) == _GZIP_MAGIC:  # decompressed a block at a time, never whole
        stream = PeekReader(counted(gzip.GzipFile(fileobj=raw, mode="rb").read, budget))
    else:
        stream = PeekReader(counted(raw.read, budget))
    with _decoding_errors():
        stream = BomTrimmer(stream)
        fmt = fmt or _octet_format(path, stream.peek(4))
        if fmt == "json":
            docs = _json_documents(stream.read())
            return iter(_json_batches(docs, metric_type, additional_variables))
    if fmt == "parquet":
        return _checked(_parquet_batches(stream), metric_type)
    return _checked(_guarded(read_csv(pa.PythonFile(stream, mode="r"))), metric_type)


class _decoding_errors:
    """Maps gzip/zlib/JSON decoding failures to InvalidInput."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, gzip.BadGzipFile | zlib.error | EOFError):
            raise InvalidInput(f"payload is not valid gzip: {exc}") from exc


def _guarded(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    with _decoding_errors():
        yield from batches


def _checked(batches: Iterator[pa.RecordBatch], metric_type: str) -> Iterator[pa.RecordBatch]:
    """cost needs a BilledCost column (any case): Krateo skipped the cycle without one."""
    first = True
    for batch in batches:
        if first and metric_type == "cost":
            require_billed_cost(batch.schema.names)
        first = False
        yield batch


def require_billed_cost(names: list[str]) -> int:
    """Index of the first column named BilledCost ignoring case, else InvalidInput."""
    for i, name in enumerate(names):
        if name.lower() == "billedcost":
            return i
    raise InvalidInput(
        "cost payload has no BilledCost column (matched ignoring case)",
        [FieldError("BilledCost", "column missing")],
    )


def _json_documents(data: bytes) -> list[Any]:
    """One or more concatenated JSON documents (one per fetched page), none nested too deep."""
    json_limits.check_depth(data, where="payload")
    try:
        return [orjson.loads(data)]
    except orjson.JSONDecodeError:
        pass
    text, docs, pos = data.decode("utf-8", errors="replace"), [], 0
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"payload is not valid JSON: {exc}", [FieldError(f"byte {exc.pos}", exc.msg)]) from exc
        docs.append(doc)
    if not docs:
        raise InvalidInput("JSON payload is empty")
    return docs


def _json_batches(docs: list[Any], metric_type: str, variables: Mapping[str, str]) -> list[pa.RecordBatch]:
    if metric_type == "cost":
        return [focusconfig_json.to_batch(docs)]
    if metric_type == "resource":
        return [azure_monitor.to_batch(docs, variables.get("ResourceId", ""))]
    if metric_type != "generic":
        raise InvalidInput(f"unknown metric type {metric_type!r}", [FieldError("metricType", "cost, resource or generic")])
    batch = prometheus_api.to_batch(docs)
    if batch is None:
        batch = generic_json.to_batch(docs)
    return [] if batch is None else [batch]


def _parquet_batches(stream: PeekReader) -> Iterator[pa.RecordBatch]:
    """Parquet needs random access: the (decompressed) body is held in memory."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(stream.read()))
        for batch in pf.iter_batches(batch_size=65536):
            yield _stringify(batch)
    except pa.ArrowException as exc:
        raise InvalidInput(f"payload is not valid Parquet: {exc}") from exc


def _stringify(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Every column as text: times RFC 3339 UTC, nested values JSON, nulls ""."""
    cols = []
    for col in batch.columns:
        t = col.type
        if pa.types.is_timestamp(t):
            col = pa.compute.strftime(col.cast(pa.timestamp(t.unit, "UTC")), format="%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_nested(t) or pa.types.is_dictionary(t) and pa.types.is_nested(t.value_type):
            col = pa.array(["" if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string())
        cols.append(pa.compute.fill_null(col.cast(pa.string()), ""))
    schema = pa.schema([pa.field(n, pa.string(), nullable=False) for n in batch.schema.names])
    return pa.RecordBatch.from_arrays(cols, schema=schema)
