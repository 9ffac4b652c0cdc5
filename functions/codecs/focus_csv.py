"""CSV payload -> all-string Arrow record batches, streamed with bounded memory.

Why Arrow's streaming reader: a 1.5 GB FOCUS export must not be held in memory, and the
exporter keeps every cell as text (Krateo labels are strings). Krateo's reader rules (finops-prometheus-exporter):
comma separator, header row required, quoted newlines allowed, and a row whose field count
differs from the header's invalidates the whole payload (no partial ingest). Because batches are
streamed, the ragged-row error is raised while iterating: callers must discard what they already
received when the iterator raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from functions.errors import FieldError, InvalidInput

BLOCK_SIZE = 8 << 20
"""Bytes parsed per block (and the rough upper bound of one output batch's text)."""

_MAX_COLUMNS = 4096
_AUTO_TYPES = {f"f{i}": pa.string() for i in range(_MAX_COLUMNS)}


class _RaggedRows:
    """Remembers the first row whose field count differs from the header's."""

    def __init__(self) -> None:
        self.first: Any = None

    def __call__(self, row: Any) -> str:
        if self.first is None:
            self.first = row
        return "error"


def read_csv(source: Any, *, block_size: int = BLOCK_SIZE) -> Iterator[pa.RecordBatch]:
    """Stream `source` (a readable binary object or pyarrow NativeFile) as string batches.

    The header is read by Arrow itself as data row 0 (auto-generated names, every column typed
    string, so no type inference ever runs), then used as the column names. A header-only payload
    yields one empty batch so the caller still learns the columns.
    """
    ragged = _RaggedRows()
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=block_size, autogenerate_column_names=True
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=ragged),
            convert_options=pacsv.ConvertOptions(
                column_types=_AUTO_TYPES, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
        yield from _renamed(reader)
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, ragged) from exc


def _renamed(reader: pacsv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    schema: pa.Schema | None = None
    for batch in reader:
        if schema is None:
            if batch.num_rows == 0:
                continue
            names = [str(v) for v in batch.slice(0, 1).to_pylist()[0].values()]
            schema = pa.schema([pa.field(n, pa.string(), nullable=False) for n in names])
            batch = batch.slice(1)
        yield pa.RecordBatch.from_arrays([_as_string(c) for c in batch.columns], schema=schema)
    if schema is None:
        raise InvalidInput("CSV payload is empty: a header row is required")


def _as_string(col: pa.Array) -> pa.Array:
    return col if col.type == pa.string() else col.cast(pa.string())


def _csv_error(exc: pa.ArrowInvalid, ragged: _RaggedRows) -> InvalidInput:
    row = ragged.first
    if row is not None:
        line = row.number if row.number is not None else "?"  # record number, header = 1
        msg = (
            f"CSV row {line} has {row.actual_columns} fields but the header has "
            f"{row.expected_columns}: the whole payload is rejected"
        )
        return InvalidInput(msg, [FieldError(f"row {line}", msg)])
    text = str(exc)
    if "Empty CSV file" in text:
        return InvalidInput("CSV payload is empty: a header row is required")
    return InvalidInput(f"CSV payload cannot be parsed: {text}")
