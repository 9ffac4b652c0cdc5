"""Names from CRs, events and URLs never lead outside their directory, and bad ones get a clear 4xx.

The reproductions: a CR whose metadata.namespace is an absolute path was stored outside the state
dir and the status writer rewrote an unrelated JSON file there; the same was reachable without a
CR through a ping event naming an absolute namespace; a very long config name answered 503.
Cases:
- Kubernetes' rules (DNS-1123): namespaces are labels (63), names subdomains (253), edges included;
- ConfigRef (from an event's data, its subject, `?config=`) refuses traversal, absolute and long names,
  non-string parts, naming the field; every stage that reads a ref refuses the same way;
- the models refuse bad metadata and bad Secret/DatabaseConfig references; the bridge gives no event;
- the local CR store (and `finops apply/get`) refuses them, writing nothing anywhere; a symlink planted
  in the store (a file or a namespace directory) that points out is refused for reads and status
  writes, and skipped by lists; a 253-character name (longer than a file name with `.json`) works;
- the snapshot store refuses keys that climb out or follow a symlink out; dotted names do not collide;
- over HTTP, a real exporter and scraper answer 400 (JSON, the field named) to a ping event naming
  `/abs/dir`, `../../x` or a 300-character name, and to GET /metrics of those: the decoy file is
  untouched and nothing is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import yaml
from dbhandler_server import start_function, stop_process
from pydantic import ValidationError

from functions import bridge, events
from functions.clients import kube
from functions.errors import InvalidInput
from functions.local.crstore import CrStore
from functions.local.supervisor import free_port
from functions.models import names, paths
from functions.models.crs import ScraperConfig
from functions.models.refs import ConfigRef
from functions.settings.focus import FocusSettings
from functions.settings.notebooks import NotebookSettings
from functions.stages import focus_ingest, notebooks
from functions.storage.snapshots import FileSnapshotStore

ROOT = Path(__file__).resolve().parent.parent
DECOY = {"owner": "someone else", "untouched": True}
LONG = "a" * 300
MAX_NAME = ".".join(["a" * 63] * 4)[:253].rstrip(".")  # 253 characters, a valid subdomain


def _decoy(tmp_path: Path) -> Path:
    """An unrelated JSON file outside the state dir (the file the status writer rewrote)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.json"
    victim.write_text(json.dumps(DECOY))
    return victim


def _untouched(victim: Path) -> None:
    assert json.loads(victim.read_text()) == DECOY
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.json"]


def scraper_config(name: str = "costs", namespace: str = "finops", ref_ns: str = "finops") -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"tableName": "costs", "pollingInterval": "1h",
                     "scraperDatabaseConfigRef": {"name": "finops-db", "namespace": ref_ns}}}


# ---- the rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["finops", "a", "0", "a-b", "1-2-3", "a" * 63])
def test_good_namespaces_pass(value: str) -> None:
    assert names.label_problem(value) is None


@pytest.mark.parametrize("value", ["", "A", "a_b", "-a", "a-", "a.b", "/some/dir", "..", "a" * 64, "é", " a", "a\n"])
def test_bad_namespaces_are_named(value: str) -> None:
    assert names.label_problem(value)


@pytest.mark.parametrize("value", ["x", "demo-focus-cost", "a.b", "0.1-x.y", MAX_NAME])
def test_good_names_pass(value: str) -> None:
    assert names.subdomain_problem(value) is None


@pytest.mark.parametrize("value", ["", "A", "a_b", ".a", "a.", "a..b", "a.-b", "../x", "/etc", "a/b", MAX_NAME + "a",
                                   LONG, "a\0b"])
def test_bad_names_are_named(value: str) -> None:
    assert names.subdomain_problem(value)


def test_a_long_value_is_cut_in_the_message() -> None:
    problem = names.subdomain_problem("A" * 200)
    assert problem is not None and "(200 characters)" in problem and "A" * 60 not in problem


@pytest.mark.parametrize("part", ["", ".", "..", "a/b", "a\\b", "a\0b", "é" * 128])
def test_a_path_part_must_be_one_plain_file_name(part: str) -> None:
    with pytest.raises(InvalidInput) as err:
        paths.inside("/tmp", "ok", part, field="spec.x")
    assert err.value.errors[0].loc == "spec.x"


def test_a_long_name_gets_a_hashed_file_name_within_255_bytes() -> None:
    a, b = paths.file_name(MAX_NAME, ".json"), paths.file_name(MAX_NAME[:-1] + "b", ".json")
    assert len(a.encode()) <= 255 and a.endswith(".json") and a != b
    assert paths.file_name("short", ".json") == "short.json"


# ---- references read from events ----------------------------------------------------------------

@pytest.mark.parametrize("subject,data,loc", [
    (None, {"kind": "ExporterScraperConfig", "namespace": "/some/dir", "name": "victim"}, "namespace"),
    (None, {"kind": "ExporterScraperConfig", "namespace": "..", "name": "x"}, "namespace"),
    (None, {"kind": "ExporterScraperConfig", "namespace": "finops", "name": "../../x"}, "name"),
    (None, {"kind": "ExporterScraperConfig", "namespace": "finops", "name": LONG}, "name"),
    (None, {"kind": "../Secret", "namespace": "finops", "name": "x"}, "kind"),
    (None, {"kind": "ScraperConfig", "namespace": ["a"], "name": "x"}, "namespace"),
    (None, {"config": "ScraperConfig//etc/passwd"}, "config"),
    (None, {"config": "ScraperConfig/finops/A_B"}, "name"),
    (None, {"kind": "ScraperConfig", "metadata": {"name": "x", "namespace": "/tmp"}}, "namespace"),
    ("ScraperConfig/../x", None, "namespace"),
    ("/some/dir/victim", None, "config"),
], ids=["absolute-ns", "dotdot-ns", "dotdot-name", "long-name", "kind-path", "list-ns", "empty-part",
        "uppercase", "cr-body", "subject-dotdot", "subject-absolute"])
def test_a_ref_naming_a_path_is_refused(subject: str | None, data: Any, loc: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ConfigRef.from_event(subject, data)
    assert err.value.status == 400
    assert loc in [e.loc for e in err.value.errors], err.value.errors


def test_every_stage_reading_a_ref_refuses_a_path(tmp_path: Path) -> None:
    data = {"kind": "Notebook", "metadata": {"name": "x", "namespace": "/etc"}}
    reader = kube.LocalReader(tmp_path)
    with pytest.raises(InvalidInput, match="namespace"):
        notebooks.handle(events.CR_APPLIED, None, data, reader, NotebookSettings())
    with pytest.raises(InvalidInput, match="namespace"):
        focus_ingest.handle(events.CR_APPLIED, None, {**data, "kind": "FocusConfig"}, reader, FocusSettings(), {})
    assert not (tmp_path / "resources").exists()


# ---- models and the bridge ------------------------------------------------------------------------

@pytest.mark.parametrize("doc,loc", [
    (scraper_config(namespace="/some/dir"), "metadata.namespace"),
    (scraper_config(name="Costs_2024"), "metadata.name"),
    (scraper_config(name=LONG), "metadata.name"),
    (scraper_config(ref_ns="../.."), "spec.scraperDatabaseConfigRef.namespace"),
], ids=["absolute-namespace", "uppercase-name", "long-name", "ref-namespace"])
def test_the_models_refuse_bad_names(doc: dict[str, Any], loc: str) -> None:
    with pytest.raises(ValidationError) as err:
        ScraperConfig.model_validate(doc)
    assert loc in [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]


def test_the_longest_valid_name_is_accepted() -> None:
    assert ScraperConfig.model_validate(scraper_config(name=MAX_NAME)).metadata.name == MAX_NAME


def test_the_bridge_gives_no_event_for_a_bad_name() -> None:
    body = scraper_config(namespace="/some/dir")
    rec = bridge.reconcile(body, lambda kind, ns, name: {"data": {}})
    assert rec.event is None and rec.pingsources == []
    assert "metadata.namespace" in [e.loc for e in rec.errors] and "metadata.namespace" in rec.message
    assert bridge.deleted_event(body) is None
    assert bridge.deleted_event(scraper_config()) is not None


# ---- the local CR store -------------------------------------------------------------------------

def test_the_store_refuses_an_absolute_namespace_and_writes_nothing(tmp_path: Path) -> None:
    victim = _decoy(tmp_path)
    store = CrStore(tmp_path / "state")
    bad = scraper_config(name="victim", namespace=str(victim.parent))
    with pytest.raises(InvalidInput) as err:
        store.apply([bad])
    assert "metadata.namespace" in [e.loc for e in err.value.errors]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "victim", "namespace": str(victim.parent)},
              "stringData": {"password": "x"}}
    with pytest.raises(InvalidInput, match="metadata.namespace"):
        store.apply([secret])
    for kind, ns, name in (("ScraperConfig", str(victim.parent), "victim"), ("Secret", "..", "x"), ("Secret", "ok", "../x")):
        with pytest.raises(InvalidInput):
            store.get(kind, ns, name)
        with pytest.raises(InvalidInput):
            store.delete(kind, ns, name)
    with pytest.raises(InvalidInput):
        kube.LocalStatusWriter(tmp_path / "state").set_conditions("ScraperConfig", str(victim.parent), "victim", [])
    _untouched(victim)
    assert list((tmp_path / "state" / "resources").rglob("*.json")) == []


def test_a_symlink_in_the_store_pointing_out_is_refused(tmp_path: Path) -> None:
    victim = _decoy(tmp_path)
    state = tmp_path / "state"
    store = CrStore(state)
    store.apply([scraper_config()])
    folder = state / "resources" / "ScraperConfig" / "finops"
    (folder / "planted.json").symlink_to(victim)
    (state / "resources" / "ScraperConfig" / "elsewhere").symlink_to(victim.parent, target_is_directory=True)
    for ns, name in (("finops", "planted"), ("elsewhere", "victim")):
        with pytest.raises(InvalidInput, match="outside"):
            store.get("ScraperConfig", ns, name)
        with pytest.raises(InvalidInput, match="outside"):
            kube.LocalStatusWriter(state).set_conditions("ScraperConfig", ns, name, [{"type": "Ready"}])
        with pytest.raises(InvalidInput, match="outside"):
            store.apply([scraper_config(name=name, namespace=ns)])
    assert [o["metadata"]["name"] for o in store.list("ScraperConfig")] == ["costs"]
    _untouched(victim)


def test_the_longest_name_is_stored_read_and_given_a_status(tmp_path: Path) -> None:
    store = CrStore(tmp_path)
    store.apply([scraper_config(name=MAX_NAME)])
    assert store.get("ScraperConfig", "finops", MAX_NAME)["metadata"]["name"] == MAX_NAME  # type: ignore[index]
    kube.LocalStatusWriter(tmp_path).set_conditions("ScraperConfig", "finops", MAX_NAME, [{"type": "Ready"}])
    assert kube.LocalReader(tmp_path).get("ScraperConfig", "finops", MAX_NAME)["status"]["conditions"] == [{"type": "Ready"}]  # type: ignore[index]
    assert [o["metadata"]["name"] for o in store.list("ScraperConfig", "finops")] == [MAX_NAME]


def finops(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "functions.cli", *args, "--state", str(state)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_finops_apply_and_get_refuse_bad_names_with_exit_2(tmp_path: Path) -> None:
    victim = _decoy(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(scraper_config(name="victim", namespace=str(victim.parent))))
    applied = finops(tmp_path / "state", "apply", "-f", str(bad))
    assert applied.returncode == 2, applied.stderr
    assert "metadata.namespace" in applied.stderr and "RFC 1123 label" in applied.stderr
    got = finops(tmp_path / "state", "get", "secret/x", "-n", "..")
    assert got.returncode == 2 and "metadata.namespace" in got.stderr
    for proc in (applied, got):
        assert "Traceback" not in proc.stderr + proc.stdout
    _untouched(victim)


# ---- snapshots ----------------------------------------------------------------------------------

def _batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"__name__": ["cost"], "__value__": [1.0]})


def test_the_snapshot_store_keeps_keys_inside_its_root(tmp_path: Path) -> None:
    victim = _decoy(tmp_path)
    store = FileSnapshotStore(tmp_path / "snapshots")
    for key in ("ExporterScraperConfig/../../outside/victim", f"ExporterScraperConfig/{victim.parent}/victim",
                "ExporterScraperConfig//x"):
        with pytest.raises(InvalidInput) as err:
            store.write(key, [_batch()], {})
        assert err.value.errors[0].loc == "config"
        with pytest.raises(InvalidInput):
            store.read_ipc(key)
    (tmp_path / "snapshots" / "ExporterScraperConfig").mkdir(parents=True)
    (tmp_path / "snapshots" / "ExporterScraperConfig" / "out").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(InvalidInput, match="outside"):
        store.write("ExporterScraperConfig/out/victim", [_batch()], {})
    _untouched(victim)


def test_dotted_and_long_names_get_their_own_snapshot(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    keys = ["ExporterScraperConfig/finops/a.b", "ExporterScraperConfig/finops/a.c", f"ExporterScraperConfig/finops/{MAX_NAME}"]
    for i, key in enumerate(keys):
        store.write(key, [pa.RecordBatch.from_pydict({"__name__": ["cost"], "__value__": [float(i)]})], {})
    for i, key in enumerate(keys):
        batches = store.read(key)
        assert batches is not None and [b.column(1)[0].as_py() for b in batches] == [float(i)]


# ---- over HTTP, unauthenticated sender ------------------------------------------------------------

TOKEN = "names-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def functions_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A real exporter and scraper (functions-framework) on the local store of a fresh state dir.

    The sender holds the shared token: a caller allowed in still cannot name a path (who may call
    at all is the authentication attack tests' subject)."""
    tmp = tmp_path_factory.mktemp("http")
    state = tmp / "state"
    token = tmp / "token"
    token.write_text(TOKEN)
    env = {"FINOPS_STATE_DIR": str(state), "FINOPS_KUBE": "local", "FINOPS_AUTH": "token",
           "FINOPS_AUTH_TOKEN_FILE": str(token)}
    ports = {"exporter": free_port(), "scraper": free_port()}
    procs = []
    try:
        for target, port in ports.items():
            procs.append(start_function(target, port, env, tmp / f"{target}.log", ROOT / "functions" / "main.py"))
        yield tmp, {t: f"http://127.0.0.1:{p}" for t, p in ports.items()}
    finally:
        for proc in procs:
            stop_process(proc)


def _ping(url: str, data: Any, subject: str | None = None) -> httpx.Response:
    headers, body = events.to_binary(events.new(events.PING, "/test/attacker", data, subject=subject))
    return httpx.post(url, content=body, headers={**headers, **AUTH}, timeout=30)


@pytest.mark.parametrize("data,subject,loc", [
    ({"kind": "ExporterScraperConfig", "namespace": "{outside}", "name": "victim"}, None, "namespace"),
    ({"kind": "ExporterScraperConfig", "namespace": "finops", "name": "../../../outside/victim"}, None, "name"),
    ({"kind": "ExporterScraperConfig", "namespace": "finops", "name": LONG}, None, "name"),
    ({}, "ExporterScraperConfig/{outside}/victim", "config"),
], ids=["absolute-namespace", "dotdot-name", "long-name", "subject"])
@pytest.mark.parametrize("target", ["exporter", "scraper"])
def test_a_ping_naming_a_path_gets_400_and_touches_nothing(functions_up: tuple[Path, dict[str, str]], target: str,
                                                         data: dict[str, Any], subject: str | None, loc: str) -> None:
    tmp, urls = functions_up
    victim = tmp / "outside" / "victim.json"
    if not victim.exists():
        _decoy(tmp)
    data = {k: v.replace("{outside}", str(victim.parent)) for k, v in data.items()}
    subject = subject.replace("{outside}", str(victim.parent)) if subject else None
    answer = _ping(urls[target], data, subject)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert loc in [e["loc"] for e in body["errors"]] and "Traceback" not in answer.text
    assert len(answer.text) < 2000  # a 300-character name is cut, not echoed
    _untouched(victim)
    assert not (tmp / "state" / "resources").exists() or not list((tmp / "state" / "resources").rglob("*.json"))


@pytest.mark.parametrize("path", [f"/metrics/finops/{LONG}", "/metrics/Finops/x", "/metrics?config=ExporterScraperConfig//etc/x",
                                  "/metrics?config=../../x"], ids=["long-name", "uppercase-ns", "empty-part", "dotdot"])
def test_get_metrics_of_a_bad_name_gets_400(functions_up: tuple[Path, dict[str, str]], path: str) -> None:
    _tmp, urls = functions_up
    answer = httpx.get(urls["exporter"] + path, headers=AUTH, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"]
