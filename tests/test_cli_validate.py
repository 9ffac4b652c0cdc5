"""`finops validate`: FOCUS findings of a local file, or the ones stored for a config's latest run.

Cases (the CLI as a real subprocess):
- a clean FOCUS 1.0 file exits 0 saying "no findings" and the version it detected;
- a file with a bad ChargeCategory and a null BilledCost exits 1 with a table naming both rules, the
  row numbers and values; --json gives the same findings as objects; errors are listed first;
- the same clean file checked --version 1.3 exits 1 (ServiceProviderName, HostProviderName missing);
- a file without BilledCost is still read (its missing column is a finding); gzip and Parquet are read;
- a missing file, a ragged CSV and an unknown --version exit 2 with one clear line, no traceback;
- KIND/NS/NAME reads finops_findings through the running stack's SQL: no table -> "no findings
  recorded for …" and 0; only the latest committed run (the ledger's) is shown, so a clean run hides
  older findings (exit 1 when it has an error, 0 when it has
  only warnings); the kind resolves like kubectl's (plural, any case); --json carries the examples as
  JSON; another config has none; no stack -> exit 2.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from embedded_sql_server import serve

from functions.clients.db import Database, connect
from functions.storage.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "focus-1.0-sample.csv"


def finops(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "functions.cli", *args, "--state", str(state)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def _sample() -> dict[str, list[str]]:
    names = SAMPLE.read_text().splitlines()[0].split(",")
    table = pacsv.read_csv(SAMPLE, convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=False))
    return {n: table.column(n).to_pylist() for n in table.column_names}


def _broken_sample(path: Path) -> Path:
    cols = _sample()
    cols["ChargeCategory"][2] = "Refund"
    cols["BilledCost"][4] = "NULL"
    pacsv.write_csv(pa.table(cols), path)
    return path


def test_a_clean_file_exits_0(tmp_path: Path) -> None:
    proc = finops(tmp_path, "validate", str(SAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "no findings"
    assert "20 rows checked as FOCUS 1.0 (detected from the columns): 0 error(s), 0 warning(s)" in proc.stdout


def test_findings_exit_1_with_rows_and_values(tmp_path: Path) -> None:
    bad = _broken_sample(tmp_path / "bad.csv")
    proc = finops(tmp_path, "validate", str(bad))
    assert proc.returncode == 1, proc.stderr
    header, _, *lines = proc.stdout.splitlines()
    assert header.split()[:5] == ["SEVERITY", "RULE", "COLUMN", "ROWS", "EXAMPLES"]
    text = "\n".join(lines)
    assert "FOCUS-ChargeCategory-allowed-values" in text and "row 3: 'Refund'" in text
    assert "FOCUS-BilledCost-not-null" in text and "row 5: 'NULL'" in text
    assert "2 error(s), 0 warning(s)" in text
    as_json = json.loads(finops(tmp_path, "validate", str(bad), "--json").stdout)
    assert as_json["version"] == "1.0" and as_json["rows"] == 20
    assert {f["rule"]: f["examples"] for f in as_json["findings"]} == {
        "FOCUS-BilledCost-not-null": [{"row": 5, "value": "NULL"}],
        "FOCUS-ChargeCategory-allowed-values": [{"row": 3, "value": "Refund"}],
    }


def test_a_version_can_be_given(tmp_path: Path) -> None:
    proc = finops(tmp_path, "validate", str(SAMPLE), "--version", "1.3")
    assert proc.returncode == 1
    rows = [line.split()[:2] for line in proc.stdout.splitlines()[2:-1]]
    assert rows[:2] == [["error", "FOCUS-HostProviderName-present"], ["error", "FOCUS-ServiceProviderName-present"]]
    assert all(sev == "warning" for sev, _ in rows[2:])
    assert "checked as FOCUS 1.3 (given)" in proc.stdout


def test_other_shapes_are_read(tmp_path: Path) -> None:
    cols = _sample()
    del cols["BilledCost"]
    no_billed = tmp_path / "no-billed.csv"
    pacsv.write_csv(pa.table(cols), no_billed)
    proc = finops(tmp_path, "validate", str(no_billed), "--json")
    assert proc.returncode == 1, proc.stderr
    assert [f["rule"] for f in json.loads(proc.stdout)["findings"]] == ["FOCUS-BilledCost-present"]
    gz = tmp_path / "sample.csv.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    assert finops(tmp_path, "validate", str(gz)).returncode == 0
    parquet = tmp_path / "sample.parquet"
    pq.write_table(pacsv.read_csv(SAMPLE), parquet)
    proc = finops(tmp_path, "validate", str(parquet), "--json")
    assert json.loads(proc.stdout)["rows"] == 20 and proc.returncode == 0, proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("validate", "missing.csv"), "cannot read missing.csv"),
    (("validate", "RAGGED"), "cannot read"),
    (("validate", str(SAMPLE), "--version", "2.0"), "unknown FOCUS version '2.0'"),
    (("validate", "ExporterScraperConfig/finops/demo"), "no stack is running"),
], ids=["missing-file", "ragged-csv", "unknown-version", "stored-without-stack"])
def test_unreadable_input_exits_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    if "RAGGED" in args:
        ragged = tmp_path / "ragged.csv"
        ragged.write_text("BilledCost,ChargeCategory\n1,Usage\n2,Usage,extra\n")
        args = ("validate", str(ragged))
    proc = finops(tmp_path, *args)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr
    _no_traceback(proc)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Path, Database]]:
    """A state dir whose stack.json points at a live embedded SQL server (this process's pid)."""
    engine = Engine()
    with serve(engine, {"finops": "pw"}) as url:
        state = tmp_path / "state"
        state.mkdir()
        (state / "stack.json").write_text(json.dumps(
            {"ready": True, "pid": os.getpid(), "db": {"url": url, "user": "finops", "password": "pw"}}))
        db = connect(url, "finops", "pw")
        yield state, db
        db.close()
    engine.close()


def _store(db: Database, run: str, at: str, rows: list[tuple[str, str, str, int, list[dict[str, object]]]]) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS finops_findings (target_table TEXT, finops_source TEXT, finops_run TEXT, "
               "focus_version TEXT, rule TEXT, column_name TEXT, severity TEXT, row_count BIGINT, examples TEXT, "
               "message TEXT, checked_at TIMESTAMP)")
    for severity, rule, column, count, examples in rows:
        db.execute("INSERT INTO finops_findings (target_table, finops_source, finops_run, focus_version, rule, "
                   "column_name, severity, row_count, examples, message, checked_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   ["demo_cost", "ExporterScraperConfig/finops/demo", run, "1.2", rule, column, severity, count,
                    json.dumps(examples), f"{column} is wrong", at])
    db.execute("REFRESH TABLE finops_findings")
    _committed(db, run, at)


def _committed(db: Database, run: str, at: str) -> None:
    """The ledger's commit row of a run, as every upload writes it (the run `validate` shows is the latest committed)."""
    from functions.storage import ledger

    db.execute(ledger.LEDGER_DDL)
    db.execute(f"INSERT INTO {ledger.LEDGER_TABLE} (target_table, finops_source, finops_run, finops_part, rows_received, "
               "rows_stored, rows_rejected, recorded_at) VALUES (?, ?, ?, ?, 0, 0, 0, ?)",
               ["demo_cost", "ExporterScraperConfig/finops/demo", run, ledger.COMMIT_PART, at])


def test_stored_findings_of_the_latest_run(stack: tuple[Path, Database]) -> None:
    state, db = stack
    none = finops(state, "validate", "ExporterScraperConfig/finops/demo")
    assert (none.returncode, none.stdout.strip()) == (0, "no findings recorded for ExporterScraperConfig/finops/demo")
    _store(db, "run-1", "2025-04-01T00:00:00Z", [("error", "FOCUS-ChargeCategory-allowed-values", "ChargeCategory", 3,
                                                  [{"row": 7, "value": "Refund"}])])
    _store(db, "run-2", "2025-04-02T00:00:00Z", [("warning", "FOCUS-InvoiceId-recommended", "InvoiceId", 10, []),
                                                 ("error", "FOCUS-BilledCost-not-null", "BilledCost", 1,
                                                  [{"row": 4, "value": None}])])
    proc = finops(state, "validate", "exporterscraperconfigs/finops/demo")
    assert proc.returncode == 1, proc.stderr
    assert "FOCUS-BilledCost-not-null" in proc.stdout and "row 4: None" in proc.stdout
    assert "FOCUS-ChargeCategory-allowed-values" not in proc.stdout  # an older run
    assert proc.stdout.splitlines()[2].startswith("error") and "run run-2 (FOCUS 1.2, table demo_cost)" in proc.stdout
    as_json = json.loads(finops(state, "validate", "ExporterScraperConfig/finops/demo", "--json").stdout)
    assert as_json["run"] == "run-2"
    assert {f["rule"]: f["examples"] for f in as_json["findings"]} == {
        "FOCUS-BilledCost-not-null": [{"row": 4, "value": None}], "FOCUS-InvoiceId-recommended": []}
    _store(db, "run-3", "2025-04-03T00:00:00Z", [("warning", "FOCUS-InvoiceId-recommended", "InvoiceId", 10, [])])
    assert finops(state, "validate", "ExporterScraperConfig/finops/demo").returncode == 0
    _committed(db, "run-4", "2025-04-04T00:00:00Z")  # a clean run stores no findings: older ones are not shown
    clean = finops(state, "validate", "ExporterScraperConfig/finops/demo")
    assert (clean.returncode, clean.stdout.strip()) == (
        0, "no findings recorded for ExporterScraperConfig/finops/demo (latest run run-4)")
    other = finops(state, "validate", "ScraperConfig/finops/demo")
    assert (other.returncode, other.stdout.strip()) == (0, "no findings recorded for ScraperConfig/finops/demo")
