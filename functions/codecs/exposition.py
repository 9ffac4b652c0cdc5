"""Prometheus text exposition (format 0.0.4) <-> sample table, both directions streamed.

`render` is what the exporter answers to a text scrape: it builds the label strings column-wise with
pyarrow.compute (escape, `name="value"`, join) instead of one Python f-string per sample, because a
FOCUS sample carries 45 labels. `parse` reads any endpoint's exposition with a compiled-regex line
parser: prometheus-client's parser reads only ~3k FOCUS samples/s (45 labels each, on 2 cores).
tests/test_exposition_parser_matches_prometheus_client.py proves both equal to prometheus-client.

Parser decisions (documented differences from Krateo's Go scraper and prometheus-client):
- every sample keeps its real value; Krateo's scraper reads only gauge values and uploads 0 for
  counter/summary/histogram samples. `_bucket`/`_sum`/`_count` are plain samples with their own name.
- sample timestamps are validated and ignored (the scraper stamps one time per cycle, as Krateo's does).
- sample names are kept as written. prometheus-client renames the samples of a `# TYPE x counter`
  family whose name lacks `_total` to `x_total` (its OpenMetrics munging); we do not.
- stricter on malformed lines that prometheus-client lets through (a leading comma in the label set,
  three or more tokens after the labels, the `{"name", ...}` UTF-8 metric-name form): InvalidInput
  with the line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from functions.errors import FieldError, InvalidInput

try:  # the reference formatting; one copy of the Go-like float rules, not ours
    from prometheus_client.utils import floatToGoString as _float_to_go
except ImportError:  # pragma: no cover - prometheus-client is a runtime dependency
    _float_to_go = repr

NAME_COLUMN = "__name__"
VALUE_COLUMN = "__value__"
ROW_COLUMN = "__row__"  # the source row number: bookkeeping of the snapshot, never a label
MAX_BATCH_ROWS = 50_000
_FIRST_SLICE_ROWS = 256
_CHUNK_BYTES = 1 << 20

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_PAIR = rf'[ \t]*(?:[a-zA-Z_][a-zA-Z0-9_]*|{_QUOTED})[ \t]*=[ \t]*{_QUOTED}[ \t]*'
# A whole sample line (already stripped): name, label block, value, timestamp. The block is taken up
# to the last `}` followed by the value and checked separately (one cheap pass per line).
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:[ \t]*\{(.*)\}[ \t]*|[ \t]+)(\S+)(?:[ \t]+(\S+))?")
# Fast path: `name="value"` pairs each ending in a comma or the block's end; they must tile the block.
_FAST_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*(?:\\.[^"\\]*)*)"(?:,|\Z)')
# Slow path (spaces, quoted UTF-8 label names): the grammar of a whole block, then its pairs.
_BLOCK = re.compile(rf"(?:{_PAIR},)*(?:{_PAIR})?[ \t]*")
_LABEL = re.compile(rf'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*|{_QUOTED})[ \t]*=[ \t]*"([^"\\]*(?:\\.[^"\\]*)*)"')
_UNESCAPE = re.compile(r'\\[\\n"]')
_UNESCAPES = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}


# ----------------------------------------------------------------------------------------- render


def render(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """Stream a sample table as exposition text in chunks of ~256 KB to ~1 MB.

    Memory stays bounded: each batch is rendered in slices sized to about _CHUNK_BYTES of text.
    """
    family: str | None = None
    pending: list[bytes] = []
    size = 0
    rows = _FIRST_SLICE_ROWS
    for batch in batches:
        start = 0
        while start < batch.num_rows:
            part = batch.slice(start, rows)
            start += part.num_rows
            lines, names = _render_lines(part)
            if lines is None:
                continue
            for run_start, run_end, name in _runs(names):
                if name != family:
                    family = name
                    pending.append(f"# HELP {name} \n# TYPE {name} gauge\n".encode())
                pending.append(_cut(lines, run_start, run_end))
            text_bytes = sum(map(len, pending)) - size
            size += text_bytes
            rows = max(64, min(16_384, _CHUNK_BYTES * len(lines) // max(text_bytes, 1)))
            if size >= _CHUNK_BYTES // 4:
                yield b"".join(pending)
                pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _render_lines(batch: pa.RecordBatch) -> tuple[pa.StringArray | None, pa.Array]:
    """One `name{labels} value\\n` string per row (rows with a null value are dropped)."""
    if NAME_COLUMN not in batch.schema.names or VALUE_COLUMN not in batch.schema.names:
        raise InvalidInput("sample table needs __name__ and __value__ columns")
    values = batch.column(VALUE_COLUMN)
    if values.null_count:
        batch = batch.filter(pc.is_valid(values))
        values = batch.column(VALUE_COLUMN)
    if batch.num_rows == 0:
        return None, pa.array([], pa.string())
    names = batch.column(NAME_COLUMN).cast(pa.string())
    label_names = sorted(n for n in batch.schema.names if n not in (NAME_COLUMN, VALUE_COLUMN, ROW_COLUMN))
    bad = [n for n in label_names if not _LABEL_NAME.fullmatch(n) or n.startswith("__")]
    if bad:
        raise InvalidInput("invalid label names", [FieldError(n, "not a Prometheus label name") for n in bad])
    pieces = [_label_pieces(n, batch.column(n)) for n in label_names]
    value_text = pa.array(map(_float_to_go, values.cast(pa.float64()).to_pylist()), pa.string())
    if pieces:
        # null_handling="skip" loses trailing all-null rows (pyarrow 26): each piece carries its comma
        labels = pc.utf8_rtrim(pc.binary_join_element_wise(*pieces, ""), characters=",")
        braced = pc.binary_join_element_wise("{", labels, "}", "")
        labels = pc.if_else(pc.equal(labels, ""), "", braced)
        line = pc.binary_join_element_wise(names, labels, " ", value_text, "\n", "")
    else:
        line = pc.binary_join_element_wise(names, " ", value_text, "\n", "")
    return line, names


def _label_pieces(name: str, column: pa.Array) -> pa.Array:
    """`name="escaped value",`, empty where the label is absent; escaping as prometheus-client does."""
    text = column if pa.types.is_string(column.type) else column.cast(pa.string())
    for raw, escaped in (("\\", "\\\\"), ("\n", "\\n"), ('"', '\\"')):
        text = pc.replace_substring(text, raw, escaped)
    return pc.fill_null(pc.binary_join_element_wise(f'{name}="', text, '",', ""), "")


def _runs(names: pa.Array) -> Iterator[tuple[int, int, str]]:
    """Contiguous runs of one family name: (start, end, name)."""
    n = len(names)
    if n > 1:
        change = pc.not_equal(names.slice(1), names.slice(0, n - 1))
        starts = [0] + [i + 1 for i in pc.indices_nonzero(change).to_pylist()]
    else:
        starts = [0]
    bounds = [*starts, n]
    for i, start in enumerate(starts):
        name = names[start].as_py()
        if not _METRIC_NAME.fullmatch(name or ""):
            raise InvalidInput(f"invalid metric name {name!r}", [FieldError(NAME_COLUMN, "not a metric name")])
        yield start, bounds[i + 1], name


def _cut(lines: pa.StringArray, start: int, end: int) -> bytes:
    """The bytes of rows [start, end) straight from the array's data buffer, no per-row copies."""
    _, offset_buf, data = lines.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offset_buf], offset=lines.offset)
    lo, hi = offsets[start].as_py(), offsets[end].as_py()
    return data[lo:hi].to_pybytes() if data is not None and hi > lo else b""


# ------------------------------------------------------------------------------------------ parse


def parse(chunks: Iterable[bytes]) -> Iterator[pa.RecordBatch]:
    """Stream exposition text into sample-table batches of at most MAX_BATCH_ROWS rows."""
    builder = _Builder()
    for number, line in _lines(chunks):
        if not line:
            continue
        if line[0] == "#":
            builder.family = _comment(line, number) or builder.family
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise _line_error(number, "not a valid sample line")
        name, block, value_text, stamp = match.groups()
        value = _number(value_text, number)
        if stamp is not None:
            _number(stamp, number)
        key, vals = _labels(block, number) if block else ((), ())
        full = builder.add(name, key, vals, value, number)
        if full is not None:
            yield full
    last = builder.flush()
    if last is not None:
        yield last


def _labels(block: str, number: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Raw label-name tokens and unescaped values of one label block."""
    pairs = _FAST_PAIR.findall(block)
    if pairs:
        key, vals = zip(*pairs, strict=True)
        tiled = sum(map(len, key)) + sum(map(len, vals)) + 4 * len(pairs) - 1 + (block[-1] == ",")
    if not pairs or tiled != len(block):
        if not _BLOCK.fullmatch(block):
            raise _line_error(number, "invalid label set")
        pairs = _LABEL.findall(block)
        if not pairs:
            return (), ()
        key, vals = zip(*pairs, strict=True)
    if "\\" in block:
        vals = tuple(map(_unescape, vals))
    return key, vals


def _lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """Numbered, stripped lines; a line may span chunks. Split on \\n only, like prometheus-client."""
    rest = b""
    number = 0
    for chunk in chunks:
        if not chunk:
            continue
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        for line in _decode(data[:cut], number).split("\n"):
            number += 1
            yield number, line.strip()
    if rest:
        number += 1
        yield number, _decode(rest, number - 1).strip()


def _decode(data: bytes, number: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = number + data.count(b"\n", 0, exc.start) + 1
        raise _line_error(line, "not UTF-8") from exc


def _comment(line: str, number: int) -> str | None:
    """HELP/TYPE lines are checked like prometheus-client does; returns the family they name."""
    parts = line.split(None, 3)
    if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
        return None
    name = parts[2]
    if name.startswith('"'):
        if len(name) < 2 or not name.endswith('"'):
            raise _line_error(number, "missing close quote in metric name")
        name = _unescape(name[1:-1])
    elif not _METRIC_NAME.fullmatch(name):
        raise _line_error(number, f"invalid metric name {name!r}")
    if parts[1] == "TYPE" and len(parts) < 4:
        raise _line_error(number, "TYPE line without a type")
    return name


def _number(text: str, number: int) -> float:
    if "_" not in text:
        try:
            return float(text)
        except ValueError:
            pass
    raise _line_error(number, f"invalid number {text!r}")


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    if "\\\\" not in text:  # no escaped backslash: the two other escapes cannot overlap
        return text.replace('\\"', '"').replace("\\n", "\n")
    return _UNESCAPE.sub(lambda m: _UNESCAPES[m.group(0)], text)


def _line_error(number: int, msg: str) -> InvalidInput:
    return InvalidInput(f"invalid exposition at line {number}: {msg}", [FieldError(f"line {number}", msg)])


class _Builder:
    """Accumulates rows column-wise. A row whose raw label tokens equal the batch's first ones takes
    the fast path (its value tuple is appended as is); others are aligned by name, None = absent.
    A new batch starts at MAX_BATCH_ROWS, or when another family (by HELP/TYPE) brings new labels."""

    def __init__(self) -> None:
        self.family: str | None = None
        self._reset((), ())

    def _reset(self, key: tuple[str, ...], names: Sequence[str]) -> None:
        self.key = key
        self.key_names = tuple(names)
        self.columns: list[str] = list(names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(names)}
        self.aligners: dict[tuple[str, ...], list[int]] = {}
        self.rows: list[Sequence[str | None]] = []
        self.names: list[str] = []
        self.values: list[float] = []
        self.batch_family: str | None = self.family

    def add(self, name: str, key: tuple[str, ...], vals: tuple[str, ...], value: float, number: int) -> pa.RecordBatch | None:
        out = None
        if key == self.key:
            self.rows.append(vals)
        else:
            out = self._add_other(name, key, vals, number)
        self.names.append(name)
        self.values.append(value)
        if len(self.names) >= MAX_BATCH_ROWS:
            return self.flush()
        return out

    def _add_other(self, name: str, key: tuple[str, ...], vals: tuple[str, ...], number: int) -> pa.RecordBatch | None:
        where = self.aligners.get(key)
        if where is None:
            names = _label_names(key, number)
            if not self.names:
                self._reset(key, names)
                self.rows.append(vals)
                return None
            new = [n for n in names if n not in self.index]
            if new and self.family != self.batch_family and self.names[-1] != name:
                out = self.flush()
                self._reset(key, names)
                self.rows.append(vals)
                return out
            for n in new:
                self.index[n] = len(self.columns)
                self.columns.append(n)
            where = self.aligners[key] = [self.index[n] for n in names]
        row: list[str | None] = [None] * len(self.columns)
        for i, v in zip(where, vals, strict=True):
            row[i] = v
        self.rows.append(row)
        return None

    def flush(self) -> pa.RecordBatch | None:
        if not self.names:
            return None
        width = len(self.columns)
        arrays: list[Any] = [pa.array(self.names, pa.string()), pa.array(self.values, pa.float64())]
        if width:
            rows = [r if len(r) == width else [*r, *([None] * (width - len(r)))] for r in self.rows]
            arrays.extend(pa.array(col, pa.string()) for col in zip(*rows, strict=True))
        batch = pa.RecordBatch.from_arrays(arrays, names=[NAME_COLUMN, VALUE_COLUMN, *self.columns])
        self._reset(self.key, self.key_names)
        return batch


def _label_names(key: tuple[str, ...], number: int) -> tuple[str, ...]:
    """Real label names of raw tokens (quoted UTF-8 names unescaped); reserved and duplicates refused."""
    names = tuple(_unescape(n[1:-1]) if n[0] == '"' else n for n in key)
    if any(n.startswith("__") for n in names):
        raise _line_error(number, "reserved label name (starts with __)")
    if len(set(names)) != len(names):
        raise _line_error(number, "duplicate label name")
    return names
