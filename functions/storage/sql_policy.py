"""The SQL front door of the embedded engine: ONE allow-list, checked with DuckDB's own parser.

Why: a database user's credentials (what a Krateo DatabaseConfig hands every scraper and notebook)
must not reach the host. DuckDB is much more than CrateDB: it reads and writes files (`read_csv`,
`glob`, `COPY`, `ATTACH`, `EXPORT DATABASE`, a file name as a table), loads native code (`INSTALL`,
`LOAD`), changes its own limits (`SET`, `RESET`, `PRAGMA`) and runs SQL given as text (`query()`).
The engine is configured closed at connect (external access off, configuration locked); this module
is the door before it: a caller's statement runs only if its kind is allowed by `ALLOW_LIST` and
nothing it names (table function, function, relation) is refused by it. A refusal is SqlError 4000
whose message starts `UnsupportedFeatureException[` and names the construct (clients answer 400).

How statements are read, never by regular expressions over the text:
- the kind: DuckDB's parser (`extract_statements`: exactly one statement, its type) and DuckDB's
  tokenizer (the leading keywords: `CREATE TABLE` is allowed, `CREATE MACRO` is not);
- queries (SELECT, WITH, VALUES): the whole syntax tree (`json_serialize_sql`), walked for every
  table function, function and relation, in subqueries, CTEs and joins alike;
- INSERT ... <query> and CREATE TABLE ... AS <query>: the query part by its syntax tree too
  (DuckDB serialises only queries, so it is serialised on its own), the rest by tokens;
- other kinds (UPDATE ... FROM, DELETE ... USING, ON CONFLICT, DDL): the token stream, for every
  function call, system relation, SHOW/DESCRIBE/SUMMARIZE/PIVOT/UNPIVOT, and every item of a
  FROM/USING list (a call there is a table function, a string or quoted path a file).
  What a token rule could still miss the closed engine refuses anyway (a 4xx by `convert.sql_error`).
- the engine's own relations (`finops_payload_*`, `finops_information_schema_*`,
  `finops_bulk_source`) are reserved names, refused in the caller's text before translation (which
  writes them itself); the `temp` and `system` catalogs are refused; CREATE/ALTER/DROP name only
  tables of the default schema.
Verdicts are cached per statement text: our statements repeat byte for byte (the engine names one
payload view for every `finops_payload('<handle>')` first, see `policy_text`).
"""

from __future__ import annotations

import atexit
import functools
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import duckdb
import orjson

from functions.storage import convert
from functions.storage.dialect import NOOP, PAYLOAD_FUNCTION, PAYLOAD_VIEWS, SqlError, tokenize, translate

Kind = Literal["statement", "no-op", "table function", "function", "relation"]


@dataclass(frozen=True)
class Rule:
    """One row of the allow-list. `name` ending in `*` matches a prefix; `*` alone is the default."""

    kind: Kind
    name: str
    allowed: bool
    why: str
    duckdb_type: str = ""
    """statements: DuckDB's StatementType the leading keywords must parse as."""


_ONLY = ("the embedded database runs the CrateDB statements our clients and notebooks use: SELECT/WITH/VALUES, "
         "INSERT (ON CONFLICT), UPDATE, DELETE, CREATE/DROP/ALTER TABLE, REFRESH/OPTIMIZE")
_FILES = "it reads, lists or writes files on the database host"
_NESTED = "it runs SQL given as text"
_INTERNALS = "it reveals the engine's settings, files and internals"
_SETTINGS = "the engine's settings (memory, threads, file access) are fixed when it starts"

ALLOW_LIST: Final[tuple[Rule, ...]] = (
    # ---- statements: leading keywords (DuckDB's tokenizer) and the type DuckDB's parser gives them
    Rule("statement", "SELECT", True, "queries: notebooks, dashboards, the optimizer, every reader", "SELECT"),
    Rule("statement", "WITH", True, "queries with common table expressions", "SELECT"),
    Rule("statement", "VALUES", True, "a literal table", "SELECT"),
    Rule("statement", "(", True, "a parenthesised query or set operation", "SELECT"),
    Rule("statement", "INSERT INTO", True, "rows: uploads, ledger, rejects, findings, AI costs, snapshots, notebooks "
         "(with ON CONFLICT and RETURNING)", "INSERT"),
    Rule("statement", "UPDATE", True, "part markers, alert claims, notebook code", "UPDATE"),
    Rule("statement", "DELETE FROM", True, "replaced slices, retention, deleted notebooks", "DELETE"),
    Rule("statement", "CREATE TABLE", True, "CREATE TABLE [IF NOT EXISTS] (...) and CREATE TABLE ... AS", "CREATE"),
    Rule("statement", "DROP TABLE", True, "DROP TABLE [IF EXISTS]", "DROP"),
    Rule("statement", "ALTER TABLE", True, "ADD COLUMN for new labels, and the like", "ALTER"),
    Rule("statement", "ATTACH", False, "it opens or creates another database file"),
    Rule("statement", "DETACH", False, "databases are the handler's"),
    Rule("statement", "COPY", False, _FILES),
    Rule("statement", "EXPORT", False, _FILES),
    Rule("statement", "IMPORT", False, _FILES),
    Rule("statement", "INSTALL", False, "it downloads and installs native code"),
    Rule("statement", "FORCE INSTALL", False, "it downloads and installs native code"),
    Rule("statement", "LOAD", False, "it loads native code"),
    Rule("statement", "UPDATE EXTENSIONS", False, "it downloads native code"),
    Rule("statement", "SET", False, _SETTINGS),
    Rule("statement", "RESET", False, _SETTINGS),
    Rule("statement", "PRAGMA", False, f"{_SETTINGS}; PRAGMA also reveals the database file's path"),
    Rule("statement", "USE", False, "there is one database and one schema (doc)"),
    Rule("statement", "CHECKPOINT", False, "engine maintenance is the handler's"),
    Rule("statement", "FORCE CHECKPOINT", False, "engine maintenance is the handler's"),
    Rule("statement", "VACUUM", False, "engine maintenance is the handler's"),
    Rule("statement", "ANALYZE", False, "engine maintenance is the handler's"),
    Rule("statement", "CALL", False, "it runs a table function: use SELECT"),
    Rule("statement", "EXPLAIN", False, "our clients do not use it, and EXPLAIN ANALYZE runs the statement"),
    Rule("statement", "PREPARE", False, "server-side prepared statements: send args instead"),
    Rule("statement", "EXECUTE", False, "server-side prepared statements: send args instead"),
    Rule("statement", "DEALLOCATE", False, "server-side prepared statements: send args instead"),
    Rule("statement", "CREATE", False, "callers create tables only (no macros, functions, secrets, views, types, "
         "sequences, schemas or indexes, no TEMP or OR REPLACE tables)"),
    Rule("statement", "DROP", False, "callers drop tables only"),
    Rule("statement", "ALTER", False, "callers alter tables only"),
    Rule("statement", "*", False, _ONLY),
    # ---- CrateDB statements answered without running anything (dialect.translate returns NOOP)
    Rule("no-op", "REFRESH", True, "CrateDB's REFRESH TABLE: DuckDB reads its own writes"),
    Rule("no-op", "OPTIMIZE", True, "CrateDB's OPTIMIZE TABLE: nothing to merge"),
    Rule("no-op", "BEGIN", True, "CrateDB accepts and ignores transactions (the `stmts` extension is atomic)"),
    Rule("no-op", "START TRANSACTION", True, "as BEGIN"),
    Rule("no-op", "COMMIT", True, "as BEGIN"),
    Rule("no-op", "END", True, "as BEGIN"),
    Rule("no-op", "ROLLBACK", True, "as BEGIN"),
    # ---- table functions: these five, and no other of the engine's
    Rule("table function", "unnest", True, "arrays to rows"),
    Rule("table function", "range", True, "number series"),
    Rule("table function", "generate_series", True, "number and time series (calendars, grids)"),
    Rule("table function", "json_each", True, "JSON text to rows"),
    Rule("table function", "json_tree", True, "JSON text to rows"),
    Rule("table function", "read_*", False, _FILES),
    Rule("table function", "parquet_*", False, _FILES),
    Rule("table function", "glob", False, _FILES),
    Rule("table function", "sniff_csv", False, _FILES),
    Rule("table function", "iceberg_*", False, _FILES),
    Rule("table function", "delta_*", False, _FILES),
    Rule("table function", "query", False, _NESTED),
    Rule("table function", "query_table", False, _NESTED),
    Rule("table function", "json_execute_serialized_sql", False, _NESTED),
    Rule("table function", "duckdb_*", False, _INTERNALS),
    Rule("table function", "pragma_*", False, _INTERNALS),
    Rule("table function", "*", False, "only unnest, range, generate_series, json_each and json_tree are allowed"),
    # ---- functions (scalar, aggregate): all allowed but these
    Rule("function", "current_setting", False, _INTERNALS),
    Rule("function", "json_execute_serialized_sql", False, _NESTED),
    Rule("function", "json_serialize_plan", False, "it plans SQL given as text"),
    Rule("function", "pg_sleep", False, "it holds the engine, which serves one statement at a time"),
    Rule("function", "sleep_ms", False, "it holds the engine, which serves one statement at a time"),
    Rule("function", "write_log", False, "engine logging is the handler's"),
    Rule("function", "enable_logging", False, "engine logging is the handler's"),
    Rule("function", "disable_logging", False, "engine logging is the handler's"),
    Rule("function", "truncate_duckdb_logs", False, "engine logging is the handler's"),
    Rule("function", "enable_profiling", False, "engine profiling is the handler's"),
    Rule("function", "disable_profiling", False, "engine profiling is the handler's"),
    Rule("function", "force_checkpoint", False, "engine maintenance is the handler's"),
    Rule("function", "checkpoint", False, "engine maintenance is the handler's"),
    # ---- relations
    Rule("relation", "information_schema", True, "CrateDB's catalogue (tables and columns report schema doc)"),
    Rule("relation", "pg_catalog", False, _INTERNALS),
    Rule("relation", "system", False, _INTERNALS),
    Rule("relation", "temp", False, "the engine's temporary views (payloads, catalogue views) are its own"),
    Rule("relation", "finops_payload_*", False, "payload views belong to the upload that registered them: name "
         "one by its handle, finops_payload('<handle>')"),
    Rule("relation", "finops_information_schema_*", False, "the engine's catalogue views: use information_schema"),
    Rule("relation", "finops_bulk_source", False, "the engine's own insert source"),
    Rule("relation", "duckdb_*", False, _INTERNALS),
    Rule("relation", "pragma_*", False, _INTERNALS),
    Rule("relation", "sqlite_*", False, _INTERNALS),
    Rule("relation", "pg_*", False, _INTERNALS),
    Rule("relation", "a file name", False, "tables are named; files on the database host are never read"),
)
"""Every decision of the front door. Statements, table functions and relations not listed as
allowed are refused; functions not listed as refused are allowed."""


def _rules(kind: Kind) -> tuple[Rule, ...]:
    return tuple(r for r in ALLOW_LIST if r.kind == kind)


def _lookup(kind: Kind, name: str) -> Rule | None:
    """The most specific rule of `kind` for `name` (exact, then longest prefix, then the `*` default)."""
    best: Rule | None = None
    for rule in _rules(kind):
        if rule.name == name:
            return rule
        if rule.name.endswith("*") and name.startswith(rule.name[:-1]) and (
            best is None or len(rule.name) > len(best.name)
        ):
            best = rule
    return best


def refusal(construct: str, why: str) -> SqlError:
    """The 4xx every refusal is: CrateDB's UnsupportedFeatureException naming the construct."""
    return SqlError(f"UnsupportedFeatureException[{construct} is not allowed in the embedded database: {why}]", 4000)


# ------------------------------------------------------------------ the engine's own catalogue


@dataclass(frozen=True)
class _Catalogue:
    """Names this DuckDB build knows: every table function, those that are also plain functions, its views."""

    table_functions: frozenset[str]
    also_plain: frozenset[str]
    system_views: frozenset[str]


_side_lock = threading.Lock()


@functools.cache
def _side() -> duckdb.DuckDBPyConnection:
    """An in-memory connection used only to parse (never to run caller SQL): closed like the engine."""
    con = duckdb.connect(":memory:")
    atexit.register(con.close)  # before interpreter finalisation, which a live connection can abort
    for setting in ("enable_external_access = false", "autoload_known_extensions = false",
                    "autoinstall_known_extensions = false", "lock_configuration = true"):
        con.execute(f"SET {setting}")
    return con


@functools.cache
def _catalogue() -> _Catalogue:
    with _side_lock:
        con = _side()
        rows = con.execute("SELECT DISTINCT function_name, function_type IN ('table', 'table_macro') "
                           "FROM duckdb_functions()").fetchall()
        views = con.execute("SELECT DISTINCT view_name FROM duckdb_views() "
                            "WHERE internal AND schema_name <> 'information_schema'").fetchall()
    table = {str(n) for n, is_table in rows if is_table}
    plain = {str(n) for n, is_table in rows if not is_table}
    return _Catalogue(frozenset(table), frozenset(table & plain), frozenset(str(v) for (v,) in views))


# ------------------------------------------------------------------ the check


def admit(stmt: str, payloads: Callable[[str], str] | None = None) -> str:
    """A caller's CrateDB statement as the DuckDB SQL to run (NOOP: answer without running).

    Raises SqlError: 4000 naming what is refused (CrateDB-only constructs by dialect.translate,
    DuckDB-only ones here), or the parser's SQLParseException.
    """
    _check_reserved(stmt)
    sql = translate(stmt, payloads)
    if sql == NOOP:
        check_noop(stmt)
    else:
        check(policy_text(sql))
    return sql


_RESERVED = re.compile(r"finops_(?:payload_|information_schema_|bulk_source)[a-z0-9_]*")
"""Names of the engine's own relations (payload views, catalogue views, the bulk insert source)."""


def _check_reserved(stmt: str) -> None:
    """Refuse the engine's own relation names wherever the CALLER's text has them (before translation).

    Why on the caller's text and as plain characters: `translate` writes these names itself (a
    payload handle becomes its quoted view name, information_schema.tables a catalogue view), so
    after translation a caller's `"finops_payload_<pid>_<hex>"` (another upload's rows) could not be
    told from ours; and DuckDB resolves names case-insensitively, quoted or not, even as a string
    in FROM. So they are refused in any spelling or position, literals and comments included.
    """
    if "finops_" not in stmt and "FINOPS_" not in stmt.upper():
        return
    found = _RESERVED.search(stmt.lower())
    if found is not None:
        name = found.group()
        rule = _lookup("relation", name)
        raise refusal(f"the reserved name {name}", rule.why if rule else _INTERNALS)


def policy_text(sql: str) -> str:
    """`sql` with every registered payload view named alike, so one verdict serves every upload part.

    Only quoted view names of the engine's exact format are replaced, by another quoted name: the
    statement's structure, and so its verdict, is unchanged. Only `translate` can have written them:
    `admit` refused the caller's text first if it named one itself (`_check_reserved`).
    """
    return PAYLOAD_VIEWS.sub(f'"{PAYLOAD_FUNCTION}"', sql) if '"finops_payload_' in sql else sql


def admit_plain(stmt: str) -> None:
    """`admit` for a statement that names no payload (a placeholder INSERT's ON CONFLICT), cached per text."""
    _raise(_plain_verdict(stmt) if len(stmt) <= _CACHE_MAX_LEN else _judged(admit, stmt))


@functools.lru_cache(maxsize=1024)
def _plain_verdict(stmt: str) -> tuple[str, int] | None:
    return _judged(admit, stmt)


def check_noop(stmt: str) -> None:
    """A statement dialect.translate answers as a no-op must be a no-op of the allow-list."""
    words = [t.up for t in tokenize(stmt)[:2]]
    if not any(r.allowed and r.name.split() == words[: len(r.name.split())] for r in _rules("no-op")):
        raise refusal(" ".join(words), _ONLY)


_CACHE_MAX_LEN = 64 * 1024
"""Longer statements (literal data) are checked every time instead of pinning them in the cache."""


def check(sql: str) -> None:
    """Raise the refusal for one DuckDB statement, or return if it may run; cached per text."""
    _raise(_verdict(sql) if len(sql) <= _CACHE_MAX_LEN else _judged(_classify, sql))


@functools.lru_cache(maxsize=4096)
def _verdict(sql: str) -> tuple[str, int] | None:
    return _judged(_classify, sql)


def _judged(judge: Callable[[str], object], text: str) -> tuple[str, int] | None:
    """A verdict that can be cached: None (it may run) or the refusal's (message, code)."""
    try:
        judge(text)
    except SqlError as exc:
        return exc.message, exc.code
    return None


def _raise(verdict: tuple[str, int] | None) -> None:
    if verdict is not None:
        raise SqlError(verdict[0], verdict[1])


@dataclass(frozen=True)
class _Tok:
    text: str
    kind: str  # DuckDB's token types: keyword, identifier, string_const, numeric_const, operator
    start: int = 0

    @property
    def word(self) -> str:
        """Keywords upper-cased, identifiers as DuckDB resolves them (unquoted, lower-cased)."""
        if self.kind == "keyword":
            return self.text.upper()
        if self.kind == "identifier":
            return self.text[1:-1].replace('""', '"').lower() if self.text.startswith('"') else self.text.lower()
        return self.text


def _tokens(sql: str) -> list[_Tok]:
    """DuckDB's own tokens of `sql`, comments left out."""
    found = duckdb.tokenize(sql)
    ends = [p for p, _ in found[1:]] + [len(sql)]
    out = []
    for (start, typ), end in zip(found, ends, strict=True):
        if typ.name != "comment":
            out.append(_Tok(sql[start:end].strip(), typ.name, start))
    return out


def _classify(sql: str) -> None:
    with _side_lock:
        try:
            statements = _side().extract_statements(sql)
        except duckdb.Error as exc:
            raise convert.sql_error(exc) from exc
        if len(statements) != 1:
            raise refusal("more than one statement in one request" if statements else "an empty statement", _ONLY)
        try:
            duck_type = statements[0].type.name
        except ValueError:  # a statement type the Python binding has no name for
            duck_type = "UNKNOWN"
    toks = _tokens(sql)
    _check_kind(toks, duck_type)
    if duck_type in ("CREATE", "ALTER", "DROP"):
        _check_target(toks)
    if duck_type == "SELECT":
        tree = _tree(sql)
        if tree is not None:
            _walk(tree)
            return
    part = _query_part(toks, duck_type) if duck_type in ("INSERT", "CREATE") else None
    if part is not None:
        begin, end = part
        stop = toks[end].start if end < len(toks) else len(sql)
        tree = _tree(sql[toks[begin].start:stop])
        if tree is not None:  # the query by its syntax tree; what is around it by tokens
            _walk(tree)
            _check_tokens(toks[:begin])
            _check_tokens(toks[end:])
            return
    _check_tokens(toks)


def _depths(toks: list[_Tok]) -> list[int]:
    """Each token's bracket depth (parentheses, brackets, braces), the opening one counted outside."""
    out, depth = [], 0
    for tok in toks:
        if tok.text in (")", "]", "}"):
            depth -= 1
        out.append(depth)
        if tok.text in ("(", "[", "{"):
            depth += 1
    return out


def _query_part(toks: list[_Tok], duck_type: str) -> tuple[int, int] | None:
    """Token range [begin, end) of the query inside INSERT ... <query> [ON CONFLICT|RETURNING ...]
    or CREATE TABLE ... AS <query>, which DuckDB serialises on its own; None when there is none."""
    depths = _depths(toks)
    begin = None
    for i in range(2, len(toks)):
        if depths[i] != 0:
            continue
        if duck_type == "CREATE" and toks[i].word == "AS":
            begin = i + 1
            break
        if duck_type == "INSERT" and toks[i].word in ("SELECT", "WITH", "VALUES", "FROM"):
            begin = i
            break
    if begin is None or begin >= len(toks):
        return None
    for j in range(begin + 1, len(toks)):
        if depths[j] == 0 and (toks[j].word == "RETURNING" or (
                toks[j].word == "ON" and j + 1 < len(toks) and toks[j + 1].word == "CONFLICT")):
            return begin, j
    return begin, len(toks)


def _check_target(toks: list[_Tok]) -> None:
    """CREATE/ALTER/DROP TABLE name only tables of the default schema: `t`, `main.t` (`doc.t` before translation)."""
    i = 2
    while i < len(toks) and toks[i].word in ("IF", "NOT", "EXISTS"):
        i += 1
    parts = [toks[i].word.lower() if toks[i].kind == "keyword" else toks[i].word] if i < len(toks) else []
    while i + 2 < len(toks) and toks[i + 1].text == ".":
        i += 2
        parts.append(toks[i].word.lower() if toks[i].kind == "keyword" else toks[i].word)
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "main"):
        raise refusal(f"the table {'.'.join(parts)}", "callers create, alter and drop tables of the default schema only")


def _check_kind(toks: list[_Tok], duck_type: str) -> None:
    words = [t.word for t in toks[:3]]
    best: Rule | None = None
    for rule in _rules("statement"):
        parts = rule.name.split()
        if rule.name != "*" and words[: len(parts)] == parts and (best is None or len(parts) > len(best.name.split())):
            best = rule
    construct = _construct(toks)
    if best is None:
        raise refusal(construct, _ONLY)
    if not best.allowed:
        raise refusal(construct, best.why)
    if best.duckdb_type != duck_type:
        shown = next((t.word for t in toks if t.kind == "keyword" and t.word in _SHOWS), None)
        if shown is not None:  # PIVOT makes a statement several (it creates a type first)
            raise refusal(shown, _ONLY)
        raise refusal(f"{construct} ... ({duck_type})", _ONLY)


def _construct(toks: list[_Tok]) -> str:
    """How a refusal names a statement: its leading words (keywords and names), at most four."""
    out: list[str] = []
    for tok in toks[:4]:
        if tok.kind not in ("keyword", "identifier") and not (not out and tok.text == "("):
            break
        out.append(tok.text.upper() if tok.kind == "keyword" else tok.text)
    return " ".join(out) or (toks[0].text if toks else "an empty statement")


def _tree(sql: str) -> Any:
    """DuckDB's syntax tree of a query, or None when DuckDB cannot serialise it (tokens decide then)."""
    with _side_lock:
        row = _side().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = orjson.loads(row[0]) if row else None
    if not isinstance(tree, dict) or tree.get("error"):
        return None
    return tree


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _walk(tree: Any) -> None:
    """Every table function, function and relation anywhere in a query's tree."""
    for node in _nodes(tree):
        typ, cls = node.get("type"), node.get("class")
        if typ == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            _check_table_function(str(fn.get("function_name", "")).lower())
        elif typ == "BASE_TABLE":
            _check_relation(str(node.get("catalog_name", "")), str(node.get("schema_name", "")),
                            str(node.get("table_name", "")))
        elif typ == "SHOW_REF":
            raise refusal("DESCRIBE/SUMMARIZE/SHOW", _ONLY)
        elif typ == "PIVOT":
            raise refusal("PIVOT/UNPIVOT", _ONLY)
        elif cls in ("FUNCTION", "WINDOW"):
            _check_function(str(node.get("function_name", "")).lower())


def _check_table_function(name: str) -> None:
    rule = _lookup("table function", name)
    if rule is None or not rule.allowed:
        raise refusal(f"the table function {name}()", rule.why if rule else _ONLY)


def _check_function(name: str) -> None:
    rule = _lookup("function", name)
    if rule is not None and not rule.allowed:
        raise refusal(f"the function {name}()", rule.why)


_FILE_CHARS = frozenset("/\\.:*?~")


def _check_relation(catalog: str, schema: str, table: str) -> None:
    if any(c in _FILE_CHARS for c in table):
        raise refusal(f"a file name as a table ('{table}')", _rule("relation", "a file name").why)
    for name in (catalog.lower(), schema.lower()):
        if name:
            rule = _lookup("relation", name)
            if rule is not None and not rule.allowed:
                raise refusal(f"the schema {name}", rule.why)
    if schema.lower() != "information_schema" and table.lower() in _catalogue().system_views:
        rule = _lookup("relation", table.lower())
        raise refusal(f"the system view {table}", rule.why if rule else _INTERNALS)


def _rule(kind: Kind, name: str) -> Rule:
    return next(r for r in _rules(kind) if r.name == name)


_DEFINES = frozenset({"INTO", "TABLE", "EXISTS", "AS"})
"""A name right after these is being defined or targeted (`CREATE TABLE summary (...)`), not called."""
_SCANS = frozenset({"FROM", "JOIN"})


_FROM_IN_CALL = frozenset({"extract", "substring", "trim", "overlay", "position"})
"""Functions whose arguments use FROM as a word (`extract(year FROM ts)`): no table is named there."""


_SHOWS = frozenset({"SHOW", "DESCRIBE", "SUMMARIZE", "PIVOT", "UNPIVOT", "PIVOT_WIDER", "PIVOT_LONGER"})
"""Statements DuckDB also accepts as a table (`FROM (SHOW ALL TABLES)`): they list the engine's internals."""
_LIST_STARTS = frozenset({"FROM", "JOIN", "USING"})
_LIST_ENDS = frozenset({"WHERE", "GROUP", "ORDER", "LIMIT", "OFFSET", "HAVING", "QUALIFY", "WINDOW", "RETURNING",
                        "UNION", "EXCEPT", "INTERSECT", "SELECT", "VALUES", "SET", "FETCH", "ON"})
"""Words that end a FROM/USING list item at its depth (ON only the item: `, x` may follow the condition)."""


def _check_tokens(toks: list[_Tok]) -> None:
    """Function calls, system relations and file names in statements DuckDB does not serialise.

    Every item of a FROM/USING list (after FROM, JOIN, USING or a comma of the list, until a
    clause word or the closing parenthesis at that depth) is a scan: a call there is a table
    function whatever else its name is (`repeat`, `histogram`), a string or a quoted name with
    a path character there is a file.
    """
    cat = _catalogue()
    calls: list[str] = []  # the name before each open parenthesis, innermost last
    lists: list[bool] = [False]  # per bracket depth: inside a FROM/USING list
    item = False  # the next token starts a FROM/USING list item
    for i, tok in enumerate(toks):
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        before = _before_name(toks, i)
        at_item, item = item, False
        if tok.text in ("(", "[", "{"):
            calls.append(toks[i - 1].word.lower() if i and tok.text == "(" else "")
            lists.append(False)
        elif tok.text in (")", "]", "}"):
            if calls:
                calls.pop()
            if len(lists) > 1:
                lists.pop()
        scans = not (calls and calls[-1] in _FROM_IN_CALL)
        word = tok.word.upper() if tok.kind == "keyword" or not tok.text.startswith('"') else ""
        if word in _SHOWS:
            raise refusal(word, _ONLY)
        if scans and tok.kind == "keyword" and word in _LIST_STARTS:
            lists[-1], item = True, True
        elif tok.kind == "keyword" and word in _LIST_ENDS:
            lists[-1] = lists[-1] and word == "ON"
        elif tok.text == "," and lists[-1]:
            item = True
        if at_item and word == "LATERAL":
            item = True
        elif at_item:
            _check_item(toks, i)
        if tok.kind in ("keyword", "identifier") and nxt == "(" and before not in _DEFINES:
            name = tok.word.lower()
            if name in cat.table_functions and (name not in cat.also_plain or before in _SCANS):
                _check_table_function(name)
            _check_function(name)
        elif tok.kind in ("keyword", "identifier") and tok.word.lower() == "temp" and nxt == "." and before != ".":
            raise refusal("the catalog temp", _rule("relation", "temp").why)
        elif tok.kind == "identifier":
            name = tok.word
            if nxt == "." and name in ("pg_catalog", "system"):
                raise refusal(f"the schema {name}", _INTERNALS)
            if name in cat.system_views and not (i >= 2 and toks[i - 2].word.lower() == "information_schema"):
                raise refusal(f"the system view {name}", _INTERNALS)
            if scans and before in _SCANS and tok.text.startswith('"') and any(c in _FILE_CHARS for c in name):
                raise refusal(f"a file name as a table ({tok.text})", _rule("relation", "a file name").why)
        elif tok.kind == "keyword" and tok.word == "SYSTEM" and nxt == ".":
            raise refusal("the catalog system", _INTERNALS)
        elif tok.kind == "string_const" and scans and i and toks[i - 1].word in _SCANS:
            raise refusal(f"a file name as a table ({tok.text})", _rule("relation", "a file name").why)


def _check_item(toks: list[_Tok], i: int) -> None:
    """The first token of a FROM/USING list item: a table function, a file, or a table (checked elsewhere)."""
    tok = toks[i]
    if tok.kind == "string_const":
        raise refusal(f"a file name as a table ({tok.text})", _rule("relation", "a file name").why)
    if tok.kind not in ("keyword", "identifier"):
        return
    j = i
    while j + 2 < len(toks) and toks[j + 1].text == "." and toks[j + 2].kind in ("keyword", "identifier"):
        j += 2
    if j + 1 < len(toks) and toks[j + 1].text == "(":
        _check_table_function(toks[j].word.lower())
    elif any(t.kind == "identifier" and t.text.startswith('"') and any(c in _FILE_CHARS for c in t.word)
             for t in toks[i:j + 1:2]):
        raise refusal(f"a file name as a table ({toks[j].text})", _rule("relation", "a file name").why)


def _before_name(toks: list[_Tok], i: int) -> str:
    """The word before the (possibly qualified, `a.b.c`) name ending at token i."""
    j = i - 1
    while j >= 1 and toks[j].text == "." and toks[j - 1].kind in ("identifier", "keyword"):
        j -= 2
    return toks[j].word if j >= 0 else ""
