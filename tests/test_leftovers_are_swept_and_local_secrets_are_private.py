"""What a killed writer leaves is swept at start, and the local store keeps Secrets to its owner.

The reproductions: an exporter killed mid-export left its temporary snapshot file behind (306 MB);
the local Secret files were world-readable (0644). Cases:
- a real writer process SIGKILLed mid-snapshot leaves a temporary file; the next store made on that
  directory removes it and keeps the last good snapshot;
- the temporary file of a live writer in another process is kept (two exporters sharing a state
  dir), and removed once that process is dead; one this process is writing is kept too;
- another host's (or an older version's) file is kept while fresh and removed after an hour without
  a write; a file named with our pid that this process is not writing is a previous life's (a
  restarted container reuses its pid) and removed;
- a store write (`.tmp-*.partial`) cut short goes when the store starts, once 10 minutes old;
- Secrets (the database password the stack creates included) are 0600 in 0700 directories; files
  and directories an older version left 0644/0755 are narrowed when the store starts and on write,
  a status write keeps 0600, and a symlink in the store is not followed by that narrowing.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from functions.clients import kube
from functions.local.crstore import CrStore
from functions.local.supervisor import ensure_db_credentials
from functions.storage import snapshots
from functions.storage.snapshots import FileSnapshotStore, sweep_stale_temporaries

ROOT = Path(__file__).resolve().parent.parent
KEY = "ExporterScraperConfig/finops/big"
WRITER = """
import sys, time
from pathlib import Path
import pyarrow as pa
from functions.storage.snapshots import FileSnapshotStore

root, marker = Path(sys.argv[1]), Path(sys.argv[2])

def batches():
    for i in range(100):
        yield pa.RecordBatch.from_pydict({"__name__": ["cost"] * 50_000, "__value__": [float(i)] * 50_000})
        if i == 3:
            marker.write_text("writing")
            time.sleep(120)

FileSnapshotStore(root).write(sys.argv[3], batches(), {})
"""


def _batch(value: float) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"__name__": ["cost"], "__value__": [value]})


def _writer(root: Path, marker: Path) -> subprocess.Popen[bytes]:
    """A real process writing a large snapshot, stopped mid-write (its marker says when)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(marker), KEY], cwd=ROOT)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, "the writer exited early"
        assert time.monotonic() < deadline, "the writer did not start writing"
        time.sleep(0.05)
    return proc


def _temporaries(root: Path) -> list[Path]:
    return sorted(root.rglob(".tmp-*"))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _value(store: FileSnapshotStore) -> float:
    batches = store.read(KEY)
    assert batches is not None
    return float([b.column(1)[0].as_py() for b in batches][0])


def test_a_killed_writers_temporary_file_is_removed_at_start(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    FileSnapshotStore(root).write(KEY, [_batch(42.0)], {})
    proc = _writer(root, tmp_path / "marker")
    _kill(proc)
    [left] = _temporaries(root)
    assert f"-{proc.pid}-" in left.name and left.stat().st_size > 0  # the reproduction: it stays behind
    store = FileSnapshotStore(root)
    assert store.swept == [left] and _temporaries(root) == []
    assert _value(store) == 42.0  # the last good snapshot is kept


def test_a_live_writers_temporary_file_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    proc = _writer(root, tmp_path / "marker")
    try:
        [live] = _temporaries(root)
        assert FileSnapshotStore(root).swept == [] and _temporaries(root) == [live]
    finally:
        _kill(proc)
    assert FileSnapshotStore(root).swept == [live]


@pytest.fixture
def writing_here(tmp_path: Path) -> Iterator[Path]:
    """A snapshot this process is writing right now, in a thread held mid-write."""
    release, started = threading.Event(), threading.Event()

    def batches() -> Iterator[pa.RecordBatch]:
        yield _batch(1.0)
        started.set()
        release.wait(30)

    store = FileSnapshotStore(tmp_path)
    thread = threading.Thread(target=store.write, args=(KEY, batches(), {}))
    thread.start()
    assert started.wait(10)
    try:
        [tmp] = _temporaries(tmp_path)
        yield tmp
    finally:
        release.set()
        thread.join(10)


def test_a_file_this_process_is_writing_is_kept(tmp_path: Path, writing_here: Path) -> None:
    assert sweep_stale_temporaries(tmp_path) == [] and writing_here.exists()


def test_other_hosts_and_old_files_go_by_age_and_a_previous_life_by_pid(tmp_path: Path) -> None:
    folder = tmp_path / "ExporterScraperConfig" / "finops"
    folder.mkdir(parents=True)
    other_host = folder / f".tmp-{'x' if socket.gethostname() != 'x' else 'y'}-1-abcd1234.arrow"
    older_version = folder / ".tmp-k2j3h4g5.arrow"
    previous_life = folder / f".tmp-{snapshots._host()}-{os.getpid()}-zz99yy88.arrow"
    snapshot = folder / "keep.arrow"
    for path in (other_host, older_version, previous_life, snapshot):
        path.write_bytes(b"partial")
    assert sweep_stale_temporaries(tmp_path) == [previous_life]
    later = time.time() + snapshots.STALE_AFTER_S + 60
    assert sorted(sweep_stale_temporaries(tmp_path, now=later)) == sorted([other_host, older_version])
    assert snapshot.exists()


def test_a_store_write_cut_short_is_removed_when_old(tmp_path: Path) -> None:
    """`write_json` writes a `.tmp-*.partial` beside the file; one older than 10 minutes is a killed
    writer's (store writes take milliseconds) and goes when the store starts; a fresh one stays."""
    CrStore(tmp_path).apply([_secret("one")])
    folder = tmp_path / "resources" / "Secret" / "finops"
    old, fresh = folder / ".tmp-old.partial", folder / ".tmp-fresh.partial"
    for path in (old, fresh):
        path.write_text('{"half": ')
    past = time.time() - kube.PARTIAL_STALE_S - 60
    os.utime(old, (past, past))
    CrStore(tmp_path)
    assert not old.exists() and fresh.exists()
    assert CrStore(tmp_path).get("Secret", "finops", "api") is not None


# ---- Secret files -------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _secret(password: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": "finops"},
            "stringData": {"password": password}}


def test_secrets_are_0600_in_0700_directories(tmp_path: Path) -> None:
    ensure_db_credentials(tmp_path)  # what `finops up` does first: the database password Secret
    CrStore(tmp_path).apply([_secret("one")])
    resources = tmp_path / "resources"
    for path in (resources / "Secret" / "finops" / "api.json", resources / "Secret" / "finops" / "finops-db-password.json",
                 resources / "DatabaseConfig" / "finops" / "finops-db.json"):
        assert _mode(path) == 0o600, path
    for directory in (resources, resources / "Secret", resources / "Secret" / "finops"):
        assert _mode(directory) == 0o700, directory


def test_what_an_older_version_left_open_is_narrowed(tmp_path: Path) -> None:
    CrStore(tmp_path).apply([_secret("one")])
    resources = tmp_path / "resources"
    secret = resources / "Secret" / "finops" / "api.json"
    outside = tmp_path / "outside.txt"
    outside.write_text("not the store's")
    outside.chmod(0o644)
    (resources / "Secret" / "finops" / "link.json").symlink_to(outside)
    for directory in (resources, resources / "Secret", resources / "Secret" / "finops"):
        directory.chmod(0o755)
    secret.chmod(0o644)
    CrStore(tmp_path)  # the store starting (every command, the stack)
    assert _mode(secret) == 0o600 and _mode(resources / "Secret" / "finops") == 0o700
    assert _mode(outside) == 0o644  # the symlink was not followed

    secret.chmod(0o644)
    (resources / "Secret").chmod(0o755)
    kube.write_json(secret, {"kind": "Secret"}, kube.store_root(tmp_path))  # any write, e.g. a changed apply
    assert _mode(secret) == 0o600 and _mode(resources / "Secret") == 0o700


def test_a_status_write_keeps_the_file_private(tmp_path: Path) -> None:
    CrStore(tmp_path).apply([{"apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig",
                              "metadata": {"name": "db", "namespace": "finops"},
                              "spec": {"username": "u", "passwordSecretRef": {"name": "api", "namespace": "finops", "key": "password"}}}])
    path = kube.resource_path(tmp_path, "DatabaseConfig", "finops", "db")
    path.chmod(0o644)
    kube.LocalStatusWriter(tmp_path).set_conditions("DatabaseConfig", "finops", "db", [{"type": "Ready"}])
    assert _mode(path) == 0o600 and list(path.parent.glob(".tmp-*")) == []
