"""The one place CrateDB SQL becomes DuckDB SQL (the embedded engine's dialect).

Why a token rewriter and not a parser: the SQL our code and the shipped notebooks emit is a small,
known subset; a tokenizer that respects quotes and comments is enough to rewrite it safely, and
every construct it does not know is either valid DuckDB as written or refused by name here.

Differences from CrateDB (kept in sync with docs/sql-dialect.md):
- STRING/TEXT -> VARCHAR; OBJECT, OBJECT(DYNAMIC|STRICT|IGNORED) -> MAP(VARCHAR, VARCHAR): object
  values are flat text maps (nested values are kept as JSON text, numbers as text).
- TIMESTAMP [WITH|WITHOUT TIME ZONE] -> TIMESTAMP holding UTC; CURRENT_TIMESTAMP/now() are UTC.
- `WITH (...)` table parameters, `CLUSTERED [BY (c)] INTO n SHARDS`, `PARTITIONED BY (...)` are
  dropped; `REFRESH TABLE`, `OPTIMIZE TABLE`, `BEGIN`, `COMMIT` are no-ops (like CrateDB's BEGIN).
- `doc.` schema prefixes are dropped; information_schema.tables/columns report schema 'doc'.
- unquoted identifiers are lower-cased (as CrateDB stores them).
- refused (code 4000, naming the construct): see `_REFUSED_STARTS` and `_check_refused`. DuckDB's
  own surface (files, settings, extensions, table functions) is refused after translation by the
  engine's front door, functions.storage.sql_policy.

EXTENSION of the embedded engine (not CrateDB SQL): `finops_payload('<handle>')` in a FROM clause
names an Arrow table that the process owning the engine registered in memory
(`Engine.register_payload`), e.g. `INSERT INTO t (a, b) SELECT a, b FROM finops_payload('h')`.
The database handler uses it for upload parts in embedded mode only (the server's `GET /` says
`finops_embedded: true`): the statement still travels through the crate client over HTTP, but
the rows do not (no JSON encode/decode of every value). Handles are one-shot, unguessable, expire,
and are valid only in the process that registered them; `translate` rewrites the call into the
registered view through the engine's resolver and refuses it when there is none (unknown, expired
or foreign handle). CrateDB mode never sends it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from functions.errors import Conflict, FinopsError, NotFound, Refused, Unauthorized, Unavailable

NOOP = ""
"""What `translate` returns for a statement that is accepted and does nothing."""


class SqlError(FinopsError):
    """A CrateDB-coded SQL error: `code` is CrateDB's error code, whose first three digits are its
    HTTP status. Like OSError picks FileNotFoundError by errno, constructing one returns the subclass
    for that status, which is also the error-table class it answers as (SqlError(..., 4041) is a
    NotFound, 4091 a Conflict, 4000 Refused, 5000 a 500). The codes we raise map the same through both rules;
    a 4xx code with no class of its own answers 400 through the table."""

    code: int

    def __new__(cls, message: str, code: int = 4000) -> SqlError:
        status = http_status(code)
        kind = _BY_STATUS.get(status, _SqlRefused if status < 500 else _SqlFailed) if cls is SqlError else cls
        return super().__new__(kind)

    def __init__(self, message: str, code: int = 4000) -> None:
        super().__init__(message)
        self.code = code


class _SqlRefused(SqlError, Refused):
    """4xxx with no more specific status: the statement's fault."""


class _SqlUnauthorized(SqlError, Unauthorized):
    """401x."""


class _SqlUnknown(SqlError, NotFound):
    """404x: an unknown relation, column or schema."""


class _SqlConflict(SqlError, Conflict):
    """409x: a duplicate key or an existing relation."""


class _SqlFailed(SqlError):
    """5xxx: the engine's trouble."""


class _SqlUnavailable(SqlError, Unavailable):
    """503x."""


_BY_STATUS: dict[int, type[SqlError]] = {400: _SqlRefused, 401: _SqlUnauthorized, 404: _SqlUnknown,
                                         409: _SqlConflict, 503: _SqlUnavailable}


def http_status(code: int) -> int:
    """CrateDB's rule: the first three digits of an error code are its HTTP status."""
    status = int(str(code)[:3])
    return status if 400 <= status < 600 else 500


def refuse(construct: str) -> SqlError:
    return SqlError(
        f"UnsupportedFeatureException[{construct} is not supported by the embedded database "
        "(CrateDB only)]",
        4000,
    )


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<comment>--[^\n]*|/\*.*?\*/)
    |(?P<str>'(?:[^']|'')*')
    |(?P<qid>"(?:[^"]|"")*")
    |(?P<param>\$\d+|\?)
    |(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>::|<=|>=|<>|!=|\|\||->>|->|[(),.;=<>+\-*/%\[\]{}:])
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Tok:
    kind: str
    text: str

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else self.text


def tokenize(stmt: str) -> list[Tok]:
    """Tokens without whitespace and comments; an unterminated quote is a syntax error."""
    out: list[Tok] = []
    for m in _TOKEN.finditer(stmt):
        kind = m.lastgroup or "other"
        text = m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "other" and text in "'\"":
            raise SqlError(f"SQLParseException[unterminated quoted text in: {stmt[:80]}]", 4000)
        out.append(Tok(kind, text))
    return out


def render(tokens: list[Tok]) -> str:
    out: list[str] = []
    prev: Tok | None = None
    for tok in tokens:
        if prev is not None and not _glued(prev, tok):
            out.append(" ")
        out.append(tok.text)
        prev = tok
    return "".join(out)


def _glued(prev: Tok, tok: Tok) -> bool:
    return tok.text in (".", ",", ")", "]", "::", "[") or prev.text in (".", "(", "[", "::")


def unquote(tok: Tok) -> str:
    """An identifier's name as CrateDB stores it: quoted kept, unquoted lower-cased."""
    if tok.kind == "qid":
        return tok.text[1:-1].replace('""', '"')
    return tok.text.lower()


# ---------------------------------------------------------------- refusals

_REFUSED_STARTS: dict[tuple[str, ...], str] = {
    ("COPY",): "COPY FROM/TO",
    ("KILL",): "KILL",
    ("CREATE", "BLOB"): "CREATE BLOB TABLE",
    ("DROP", "BLOB"): "DROP BLOB TABLE",
    ("ALTER", "BLOB"): "ALTER BLOB TABLE",
    ("CREATE", "REPOSITORY"): "CREATE REPOSITORY",
    ("DROP", "REPOSITORY"): "DROP REPOSITORY",
    ("CREATE", "SNAPSHOT"): "CREATE SNAPSHOT",
    ("DROP", "SNAPSHOT"): "DROP SNAPSHOT",
    ("RESTORE",): "RESTORE SNAPSHOT",
    ("CREATE", "ANALYZER"): "CREATE ANALYZER",
    ("DROP", "ANALYZER"): "DROP ANALYZER",
    ("CREATE", "FUNCTION"): "CREATE FUNCTION (user-defined functions)",
    ("CREATE", "OR", "REPLACE", "FUNCTION"): "CREATE FUNCTION (user-defined functions)",
    ("CREATE", "USER"): "CREATE USER (users are configured, not created by SQL)",
    ("CREATE", "ROLE"): "CREATE ROLE",
    ("ALTER", "USER"): "ALTER USER",
    ("GRANT",): "GRANT",
    ("DENY",): "DENY",
    ("REVOKE",): "REVOKE",
    ("ALTER", "CLUSTER"): "ALTER CLUSTER",
    ("SET", "GLOBAL"): "SET GLOBAL",
    ("RESET", "GLOBAL"): "RESET GLOBAL",
    ("SET", "LICENSE"): "SET LICENSE",
    ("CREATE", "PUBLICATION"): "CREATE PUBLICATION (logical replication)",
    ("CREATE", "SUBSCRIPTION"): "CREATE SUBSCRIPTION (logical replication)",
    ("CREATE", "SERVER"): "CREATE SERVER (foreign data wrappers)",
    ("CREATE", "FOREIGN"): "CREATE FOREIGN TABLE",
    ("DECLARE",): "DECLARE (cursors)",
}
_SYSTEM_COLUMNS = {"_id", "_score", "_version", "_seq_no", "_primary_term", "_docid", "_raw", "_doc", "_uid"}
_NOOP_STARTS = {("REFRESH",), ("OPTIMIZE",), ("BEGIN",), ("COMMIT",), ("START", "TRANSACTION"), ("END",)}


def _check_refused(toks: list[Tok]) -> None:
    ups = [t.up for t in toks[:4]]
    for start, name in _REFUSED_STARTS.items():
        if tuple(ups[: len(start)]) == start:
            raise refuse(name)
    for i, tok in enumerate(toks):
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        if tok.kind == "word" and tok.up == "MATCH" and nxt == "(":
            raise refuse("MATCH() full-text search")
        if tok.kind in ("word", "qid") and unquote(tok) in _SYSTEM_COLUMNS:
            raise refuse(f"the system column {unquote(tok)}")
        if tok.kind == "word" and tok.up == "SYS" and nxt == ".":
            prev = toks[i - 1].text if i else ""
            if prev != ".":
                raise refuse("the sys schema")
        if tok.kind == "word" and tok.up == "FULLTEXT":
            raise refuse("FULLTEXT indexes")
        if tok.kind == "word" and tok.up == "GEO_SHAPE":
            raise refuse("the GEO_SHAPE type")
        if tok.text == ";" and i != len(toks) - 1:
            raise refuse("more than one statement in one request")


# ---------------------------------------------------------------- rewrites

_MAP = [Tok("word", "MAP"), Tok("op", "("), Tok("word", "VARCHAR"), Tok("op", ","),
        Tok("word", "VARCHAR"), Tok("op", ")")]


def _rewrite_types(toks: list[Tok], ddl: bool) -> list[Tok]:
    """STRING/TEXT/OBJECT/TIMESTAMP WITH TIME ZONE -> DuckDB types, in type positions."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        prev = out[-1].up if out else ""
        in_type_pos = ddl or prev in ("::", "AS")
        if tok.kind == "word" and in_type_pos and tok.up in ("STRING", "TEXT"):
            out.append(Tok("word", "VARCHAR"))
        elif tok.kind == "word" and in_type_pos and tok.up == "OBJECT":
            i = _skip_object_args(toks, i + 1) - 1
            out.extend(_MAP)
        elif tok.kind == "word" and tok.up == "TIMESTAMP" and [t.up for t in toks[i + 1 : i + 4]] in (
            ["WITH", "TIME", "ZONE"], ["WITHOUT", "TIME", "ZONE"]
        ):
            out.append(Tok("word", "TIMESTAMP"))
            i += 3
        else:
            out.append(tok)
        i += 1
    return out


def _skip_object_args(toks: list[Tok], i: int) -> int:
    """Index after `(DYNAMIC|STRICT|IGNORED)` following OBJECT; typed objects are refused."""
    if i < len(toks) and toks[i].text == "(":
        if i + 2 < len(toks) and toks[i + 1].up in ("DYNAMIC", "STRICT", "IGNORED") and toks[i + 2].text == ")":
            i += 3
        else:
            raise refuse("OBJECT with a column list")
    if i < len(toks) and toks[i].up == "AS" and i + 1 < len(toks) and toks[i + 1].text == "(":
        raise refuse("OBJECT ... AS (typed object columns)")
    return i


def _matching(toks: list[Tok], i: int) -> int:
    """Index of the parenthesis closing the one at i."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "(":
            depth += 1
        elif toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    raise SqlError("SQLParseException[unbalanced parentheses]", 4000)


def _strip_table_options(toks: list[Tok]) -> list[Tok]:
    """Drop CrateDB's storage clauses after a CREATE TABLE column list."""
    if not toks or toks[0].up != "CREATE":
        return toks
    try:
        start = next(i for i, t in enumerate(toks) if t.text == "(")
    except StopIteration:
        return toks
    end = _matching(toks, start)
    head, tail = toks[: end + 1], toks[end + 1 :]
    out: list[Tok] = []
    i = 0
    while i < len(tail):
        up = tail[i].up
        if up == "WITH" and i + 1 < len(tail) and tail[i + 1].text == "(":
            i = _matching(tail, i + 1) + 1
        elif up == "PARTITIONED" and i + 2 < len(tail) and tail[i + 2].text == "(":
            i = _matching(tail, i + 2) + 1
        elif up == "CLUSTERED":
            i += 1
            if i < len(tail) and tail[i].up == "BY":
                i = _matching(tail, i + 1) + 1
            if i < len(tail) and tail[i].up == "INTO":
                i += 3  # INTO n SHARDS
        else:
            out.append(tail[i])
            i += 1
    return head + out


def _rewrite_names(toks: list[Tok]) -> list[Tok]:
    """doc. prefixes, information_schema views, CURRENT_TIMESTAMP, lower-cased identifiers."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        after = toks[i + 2] if i + 2 < len(toks) else None
        prev = out[-1].text if out else ""
        if tok.kind in ("word", "qid") and unquote(tok) == "doc" and nxt and nxt.text == "." and prev != ".":
            i += 2
            continue
        if tok.kind == "word" and tok.up == "INFORMATION_SCHEMA" and nxt and nxt.text == "." and after:
            view = INFO_VIEWS.get(unquote(after))
            if view is not None:
                out.append(Tok("word", view))
                i += 3
                continue
        if tok.kind == "word" and tok.up in ("CURRENT_TIMESTAMP", "NOW", "LOCALTIMESTAMP") and prev != ".":
            i = _skip_call_parens(toks, i + 1, tok.up)
            out.extend(tokenize("CAST(CURRENT_TIMESTAMP AS TIMESTAMP)"))
            continue
        out.append(Tok("word", tok.text.lower()) if tok.kind == "word" else tok)
        i += 1
    return out


def _skip_call_parens(toks: list[Tok], i: int, name: str) -> int:
    if i < len(toks) and toks[i].text == "(":
        return _matching(toks, i) + 1
    return i


INFO_VIEWS = {"tables": "finops_information_schema_tables", "columns": "finops_information_schema_columns"}
"""information_schema views the engine creates (schema 'main' reported as CrateDB's 'doc')."""


PAYLOAD_FUNCTION = "finops_payload"
"""The embedded engine's table function over a registered in-process Arrow payload (extension)."""

PAYLOAD_VIEWS = re.compile(r'"finops_payload_[0-9]+_[0-9a-f]{32}"')
"""A registered payload's view name as `translate` writes it (quoted), for `payload_view` handles."""


def payload_view(handle: str) -> str:
    """The view a payload handle (`<pid>-<32 hex>`) is registered as in the engine."""
    return f"{PAYLOAD_FUNCTION}_{handle.replace('-', '_')}"


def _rewrite_payloads(toks: list[Tok], resolve: Callable[[str], str] | None) -> list[Tok]:
    """`finops_payload('<handle>')` -> the quoted name of the view the engine registered for it."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if not (tok.kind == "word" and tok.text.lower() == PAYLOAD_FUNCTION and i + 1 < len(toks) and toks[i + 1].text == "("):
            out.append(tok)
            i += 1
            continue
        if i + 3 >= len(toks) or toks[i + 2].kind != "str" or toks[i + 3].text != ")":
            raise SqlError(f"SQLParseException[{PAYLOAD_FUNCTION}() takes one string literal: a payload handle]", 4000)
        handle = toks[i + 2].text[1:-1].replace("''", "'")
        if resolve is None:
            raise SqlError(
                f"UnsupportedFeatureException[{PAYLOAD_FUNCTION}('{handle}') is an extension of the embedded "
                "engine, usable only by the process that registered the payload]",
                4000,
            )
        out.append(Tok("qid", quote_ident(resolve(handle))))
        i += 4
    return out


def translate(stmt: str, payloads: Callable[[str], str] | None = None) -> str:
    """CrateDB SQL -> DuckDB SQL; NOOP for accepted no-ops; SqlError(4000) for refused constructs.

    `payloads` resolves a `finops_payload('<handle>')` handle to the engine's registered view name
    (raising SqlError for unknown handles); without it the extension is refused.
    """
    toks = tokenize(stmt)
    if toks and toks[-1].text == ";":
        toks = toks[:-1]
    if not toks:
        raise SqlError("SQLParseException[empty statement]", 4000)
    _check_refused(toks)
    ups = tuple(t.up for t in toks[:2])
    if ups[:1] in _NOOP_STARTS or ups in _NOOP_STARTS:
        return NOOP
    if ups[:1] == ("ROLLBACK",):
        return NOOP
    ddl = ups[0] in ("CREATE", "ALTER")
    toks = _strip_table_options(toks) if ddl else toks
    toks = _rewrite_types(toks, ddl)
    toks = _rewrite_payloads(toks, payloads)
    toks = _rewrite_names(toks)
    return render(toks)


def statement_kind(stmt: str) -> str:
    """The statement's first keyword, lower-cased ('select', 'insert', 'create', ...)."""
    for tok in tokenize(stmt):
        return tok.text.lower() if tok.kind == "word" else tok.text
    return ""


# ---------------------------------------------------------------- INSERT ... VALUES (?, ...)


@dataclass(frozen=True)
class Insert:
    """An `INSERT INTO t (cols) VALUES (?, ...)[, (...)] [ON CONFLICT ...]` with only placeholders.

    `params` holds, per VALUES tuple, the 0-based argument index of each column. `on_conflict`
    is the translated clause ('' when absent), `conflict_cols` its target columns.
    """

    table: str
    columns: tuple[str, ...]
    params: tuple[tuple[int, ...], ...]
    on_conflict: str
    conflict_cols: tuple[str, ...]
    do_nothing: bool


def parse_insert(stmt: str) -> Insert | None:
    """The placeholder INSERT the engine inserts columnarly, or None for any other statement."""
    toks = tokenize(stmt)
    if toks and toks[-1].text == ";":
        toks = toks[:-1]
    if len(toks) < 6 or toks[0].up != "INSERT" or toks[1].up != "INTO":
        return None
    _check_refused(toks)
    i = 2
    if toks[i].kind in ("word", "qid") and unquote(toks[i]) == "doc" and toks[i + 1].text == ".":
        i += 2
    if toks[i].kind not in ("word", "qid"):
        return None
    table = unquote(toks[i])
    i += 1
    if toks[i].text != "(":
        return None
    end = _matching(toks, i)
    columns = _column_list(toks[i + 1 : end])
    i = end + 1
    if i >= len(toks) or toks[i].up != "VALUES":
        return None
    params, i = _values_params(toks, i + 1, len(columns))
    if params is None:
        return None
    return _with_conflict(table, columns, params, toks[i:])


def _column_list(toks: list[Tok]) -> tuple[str, ...]:
    names = [unquote(t) for t in toks if t.kind in ("word", "qid")]
    if len(names) * 2 - 1 != len(toks):
        raise SqlError("SQLParseException[INSERT column list must be plain column names]", 4000)
    if len(set(names)) != len(names):
        raise SqlError("SQLParseException[column listed more than once in INSERT]", 4000)
    return tuple(names)


def _values_params(toks: list[Tok], i: int, width: int) -> tuple[tuple[tuple[int, ...], ...] | None, int]:
    rows: list[tuple[int, ...]] = []
    counter = 0
    while i < len(toks) and toks[i].text == "(":
        end = _matching(toks, i)
        inner = toks[i + 1 : end]
        if any(t.kind != "param" for t in inner[0::2]) or any(t.text != "," for t in inner[1::2]):
            return None, i
        row: list[int] = []
        for tok in inner[0::2]:
            if tok.text == "?":
                row.append(counter)
                counter += 1
            else:
                row.append(int(tok.text[1:]) - 1)
        if len(row) != width:
            raise SqlError(
                f"SQLParseException[INSERT has {width} columns but {len(row)} values]", 4000
            )
        rows.append(tuple(row))
        i = end + 1
        if i < len(toks) and toks[i].text == ",":
            i += 1
    return (tuple(rows) if rows else None), i


def _with_conflict(
    table: str, columns: tuple[str, ...], params: tuple[tuple[int, ...], ...], rest: list[Tok]
) -> Insert | None:
    if not rest:
        return Insert(table, columns, params, "", (), False)
    if [t.up for t in rest[:2]] != ["ON", "CONFLICT"]:
        return None
    conflict_cols: tuple[str, ...] = ()
    if len(rest) > 2 and rest[2].text == "(":
        end = _matching(rest, 2)
        conflict_cols = _column_list(rest[3:end])
    do_nothing = [t.up for t in rest[-2:]] == ["DO", "NOTHING"]
    clause = render(_rewrite_names(rest))
    return Insert(table, columns, params, clause, conflict_cols, do_nothing)


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier; CrateDB and DuckDB agree on the quoting (an inner `"` is doubled).

    Every name our code puts into SQL goes through here: callers validate names first, quoting is
    the second guard against injection.
    """
    return '"' + name.replace('"', '""') + '"'
