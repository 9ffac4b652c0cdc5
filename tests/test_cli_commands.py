"""The `finops` CLI, run as a real subprocess, for the commands that need no running stack.

Cases:
- apply every example, get as a table / JSON / YAML (by kind, plural, short name), delete by ref and -f;
- apply of an invalid CR exits 2 naming the field, with no traceback; bad YAML and a missing file too;
- get/delete of an unknown kind or a missing object exit 2 with a clear message;
- sql and run without a stack exit 2 telling how to start one (a stale stack.json counts as not running);
- run of a kind without a schedule exits 2; down without a stack is a no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))


def finops(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "functions.cli", *args, "--state", str(state)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_apply_get_delete(tmp_path: Path) -> None:
    args = [a for p in EXAMPLES for a in ("-f", str(p))]
    applied = finops(tmp_path, "apply", *args)
    assert applied.returncode == 0, applied.stderr
    assert "exporterscraperconfig/demo-focus-cost (finops) created" in applied.stdout
    assert "stored only" in applied.stdout

    table = finops(tmp_path, "get")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["KIND", "NAMESPACE", "NAME", "AGE"]
    for name in ("demo-focus-cost", "demo-azure-usage", "demo-metrics", "finops-db", "finops-db-password"):
        assert name in table.stdout

    one = json.loads(finops(tmp_path, "get", "dbconf/finops/finops-db", "-o", "json").stdout)
    assert one["spec"]["username"] == "finops" and one["metadata"]["generation"] == 1
    listed = list(yaml.safe_load_all(finops(tmp_path, "get", "exporterscraperconfigs", "-o", "yaml").stdout))
    assert sorted(o["metadata"]["name"] for o in listed) == ["demo-azure-usage", "demo-focus-cost"]
    by_ns = finops(tmp_path, "get", "scraperconfig/demo-metrics", "-n", "finops", "-o", "json")
    assert json.loads(by_ns.stdout)["kind"] == "ScraperConfig"

    deleted = finops(tmp_path, "delete", "scraperconfig/finops/demo-metrics")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    by_file = finops(tmp_path, "delete", "-f", str(ROOT / "crds" / "examples" / "databaseconfig.yaml"))
    assert by_file.returncode == 0 and by_file.stdout.count("deleted") == 2
    assert "finops-db" not in finops(tmp_path, "get").stdout


def test_invalid_cr_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig",
                                   "metadata": {"name": "x"},
                                   "spec": {"tableName": "t", "pollingInterval": "soon",
                                            "scraperDatabaseConfigRef": {"name": "d", "namespace": "n"}}}))
    proc = finops(tmp_path, "apply", "-f", str(bad))
    assert proc.returncode == 2
    assert "spec.pollingInterval" in proc.stderr and "invalid Go duration" in proc.stderr
    _no_traceback(proc)


@pytest.mark.parametrize("args,message", [
    (("apply", "-f", "missing.yaml"), "cannot read missing.yaml"),
    (("get", "configmaps"), "unknown kind 'configmaps'; supported kinds: ExporterScraperConfig"),
    (("get", "scraperconfig/default/nope"), "not found"),
    (("delete", "scraperconfig/default/nope"), "not found"),
    (("delete",), "nothing to delete"),
    (("sql", "select 1"), "no stack is running"),
], ids=["missing-file", "unknown-kind", "get-missing", "delete-missing", "delete-nothing", "sql-no-stack"])
def test_user_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = finops(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    _no_traceback(proc)


def test_bad_yaml_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    proc = finops(tmp_path, "apply", "-f", str(bad))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
    _no_traceback(proc)


def test_run_needs_a_schedule_and_a_stack(tmp_path: Path) -> None:
    finops(tmp_path, "apply", "-f", str(ROOT / "crds" / "examples" / "databaseconfig.yaml"),
           "-f", str(ROOT / "crds" / "examples" / "scraperconfig.yaml"))
    no_schedule = finops(tmp_path, "run", "dbconf/finops/finops-db")
    assert no_schedule.returncode == 2 and "has no schedule" in no_schedule.stderr
    stale = subprocess.Popen([sys.executable, "-c", "pass"])
    stale.wait()
    (tmp_path / "stack.json").write_text(json.dumps({"pid": stale.pid, "ready": True, "broker": "http://127.0.0.1:1"}))
    no_stack = finops(tmp_path, "run", "scraperconfig/finops/demo-metrics")
    assert no_stack.returncode == 2 and "finops up" in no_stack.stderr
    _no_traceback(no_stack)


def test_down_without_a_stack(tmp_path: Path) -> None:
    proc = finops(tmp_path, "down")
    assert proc.returncode == 0 and "no stack running" in proc.stdout
