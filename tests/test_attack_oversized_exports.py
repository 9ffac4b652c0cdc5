"""An export that is too big fails clearly and keeps the last good snapshot; a gzip bomb stops at the cap.

Cases:
- the defaults (FINOPS_EXPORT_MAX_BYTES, FINOPS_EXPORT_MAX_ROWS) leave room for the 1M-row bench: a
  million demo FOCUS rows (bytes per row measured on the demo API's CSV) fit, with margin, under both;
- codec level (functions.codecs.sources with a ByteBudget): a 1 MB gzip body (multi-member, as gzip
  allows) that would expand to 1 GiB is refused naming FINOPS_EXPORT_MAX_BYTES after reading little
  more than the cap, never the whole; the same body under the cap parses;
- client level (fetch with a ByteBudget): a `Content-Encoding: gzip` bomb, which httpx expands while
  streaming, is refused at the cap and little more than the cap reaches the file;
- the real exporter function (functions-framework on 127.0.0.1, local CR store, a real cost API on
  127.0.0.1 whose answer changes): a good export, then (each answered 200 with io.finops.export.failed
  naming the cap and its setting, the CR's status Ready=False saying the same, GET /metrics/<ns>/<name>
  still the good snapshot byte for byte, no temporary snapshot file left behind) a gzip bomb, a
  Content-Encoding bomb and too many rows; then a good export is Ready=True again. The exporter's peak
  memory stays far below the bomb's size.
"""

from __future__ import annotations

import functools
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from dbhandler_server import AUTH, start_function, stop_process
from loopback_http import Reply, Seen, serve

from functions import events
from functions.clients.endpoint import Endpoint, RetryPolicy, fetch
from functions.codecs._streams import ByteBudget
from functions.codecs.sources import read_payload
from functions.demo.demo_apis import DemoCostApi
from functions.demo.focus_rows import focus_csv_text
from functions.errors import InvalidInput
from functions.local.crstore import CrStore
from functions.local.supervisor import free_port
from functions.models.crs import API
from functions.settings.collection import CollectionSettings

MAIN = Path(__file__).resolve().parents[1] / "functions" / "main.py"
NS, NAME = "finops", "costs"
MAX_BYTES, MAX_ROWS = 32 << 20, 5000
SETTING_BYTES, SETTING_ROWS = "FINOPS_EXPORT_MAX_BYTES", "FINOPS_EXPORT_MAX_ROWS"
GOOD = focus_csv_text(120, seed=3).encode()


@functools.lru_cache(maxsize=4)
def bomb(expanded: int, *, members: bool = True) -> bytes:
    """A valid FOCUS CSV (20 real rows, each padded with a 16 KiB column, then the first row again and
    again) gzipped to about 1/700 of `expanded`. `members`: one gzip member per MiB, concatenated (one
    gzip stream to every reader, RFC 1952; fast to build); else one member (what an HTTP
    Content-Encoding decoder reads: httpx decodes the first member only)."""
    lines = focus_csv_text(20, seed=4).splitlines()
    padded = ["x_Padding," + lines[0]] + [f"{'A' * 16384},{line}" for line in lines[1:]]
    head = ("\n".join(padded) + "\n").encode()
    row = (padded[1] + "\n").encode()
    chunk = row * ((1 << 20) // len(row))
    if members:
        return gzip.compress(head, 9) + gzip.compress(chunk, 9) * (expanded // (1 << 20))
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    return b"".join([packer.compress(head), *(packer.compress(chunk) for _ in range(expanded // (1 << 20))), packer.flush()])


def test_the_default_caps_leave_room_for_the_million_row_bench() -> None:
    with DemoCostApi(rows=2000, seed=1) as api:
        per_row = api.csv_path.stat().st_size / 2000
    defaults = CollectionSettings()
    assert defaults.export_max_rows >= 2 * 1_000_000
    assert defaults.export_max_bytes >= 2 * 1_000_000 * per_row, f"{per_row:.0f} bytes per demo row"


def test_a_gzip_bomb_stops_at_the_cap_without_being_read_whole() -> None:
    body = bomb(1 << 30)
    assert len(body) < 2 << 20, "a small body"
    budget = ByteBudget(MAX_BYTES, SETTING_BYTES)
    with pytest.raises(InvalidInput) as info:
        for _ in read_payload(body, "text/csv", "/export.csv", "cost", budget=budget):
            pass
    assert SETTING_BYTES in info.value.message and str(MAX_BYTES) in info.value.message
    assert MAX_BYTES < budget.used <= MAX_BYTES + (16 << 20), "stopped one read after the cap"
    small = bomb(8 << 20)
    rows = sum(b.num_rows for b in read_payload(small, "text/csv", "/export.csv", "cost", budget=ByteBudget(MAX_BYTES, SETTING_BYTES)))
    assert rows > 100


def test_a_content_encoding_bomb_stops_at_the_cap_while_streaming() -> None:
    body = bomb(256 << 20, members=False)
    assert len(body) < 1 << 20, "a small body"
    with serve(Reply(200, body, {"Content-Type": "text/csv", "Content-Encoding": "gzip"})) as srv:
        dest = io.BytesIO()
        with pytest.raises(InvalidInput, match=f"bytes received \\({SETTING_BYTES}\\)"):
            fetch(API(path="/export.csv"), Endpoint(server_url=srv.url), {}, dest=dest, retry=RetryPolicy(max_retries=0),
                  environ={}, budget=ByteBudget(MAX_BYTES, SETTING_BYTES, "received"))
    assert len(dest.getvalue()) <= MAX_BYTES + (4 << 20)


# ---- the real exporter ------------------------------------------------------------------------------


@dataclass
class Api:
    """The cost API's current answer (the test switches it between cycles)."""

    reply: Reply = field(default_factory=lambda: Reply(200, GOOD, {"Content-Type": "text/csv"}))

    def __call__(self, seen: Seen) -> Reply:
        return self.reply


@dataclass
class Exporter:
    url: str
    state: Path
    api: Api
    pid: int

    def cycle(self) -> tuple[str, dict[str, object]]:
        tick = events.new(events.PING, "/tests", data={"kind": "ExporterScraperConfig", "namespace": NS, "name": NAME})
        headers, body = events.to_binary(tick)
        answer = httpx.post(self.url + "/", headers={**headers, **AUTH}, content=body, timeout=120)
        assert answer.status_code == 200, answer.text
        reply = events.from_http(dict(answer.headers), answer.content)
        assert isinstance(reply.data, dict)
        return reply.type, reply.data

    def metrics(self) -> bytes:
        answer = httpx.get(f"{self.url}/metrics/{NS}/{NAME}", headers=AUTH, timeout=30)
        assert answer.status_code == 200 and answer.headers["x-finops-snapshot"] == "present"
        return answer.content

    def ready(self) -> dict[str, str]:
        cr = CrStore(self.state).get("ExporterScraperConfig", NS, NAME) or {}
        return next(c for c in cr["status"]["conditions"] if c["type"] == "Ready")

    def peak_rss_mib(self) -> float:
        """The largest peak resident set (VmHWM) of the process and its children (a gunicorn worker serves)."""
        pids, peaks = [self.pid], []
        while pids:
            pid = pids.pop()
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
            status = Path(f"/proc/{pid}/status").read_text()
            peaks.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)
        return max(peaks)


@pytest.fixture(scope="module", name="exporter")
def exporter_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    tmp = tmp_path_factory.mktemp("exporter")
    state = tmp / "state"
    api = Api()
    with serve(api) as srv:
        CrStore(state).apply([
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "cost-api", "namespace": NS},
             "stringData": {"server-url": srv.url, "token": "cost-token"}},
            {"apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig", "metadata": {"name": NAME, "namespace": NS},
             "spec": {"exporterConfig": {"api": {"path": "/focus/export.csv", "verb": "GET",
                                                 "endpointRef": {"name": "cost-api", "namespace": NS}},
                                         "metricType": "cost", "pollingInterval": "1h"}}},
        ])
        port = free_port()
        env = {"FINOPS_STATE_DIR": str(state), "FINOPS_KUBE": "local",
               SETTING_BYTES: str(MAX_BYTES), SETTING_ROWS: str(MAX_ROWS), "CLIENT_MAX_RETRIES": "0"}
        process = start_function("exporter", port, env, tmp / "exporter.log", source=MAIN)
        try:
            yield Exporter(f"http://127.0.0.1:{port}", state, api, process.pid)
        finally:
            stop_process(process)


def test_a_good_export_then_oversized_ones_keep_the_good_snapshot(exporter: Exporter) -> None:
    kind, data = exporter.cycle()
    assert kind == events.EXPORT_COMPLETED and data["rows"] == 120
    good = exporter.metrics()
    assert exporter.ready()["status"] == "True"

    too_many = focus_csv_text(MAX_ROWS + 500, seed=6).encode()
    assert len(too_many) < MAX_BYTES
    cases = [
        ("gzip bomb", Reply(200, bomb(1 << 30), {"Content-Type": "text/csv"}), SETTING_BYTES, "decompressed"),
        ("content-encoding bomb", Reply(200, bomb(256 << 20, members=False), {"Content-Type": "text/csv", "Content-Encoding": "gzip"}),
         SETTING_BYTES, "received"),
        ("too many rows", Reply(200, too_many, {"Content-Type": "text/csv"}), SETTING_ROWS, f"more than {MAX_ROWS} rows"),
    ]
    for what, reply, setting, words in cases:
        exporter.api.reply = reply
        kind, data = exporter.cycle()
        assert kind == events.EXPORT_FAILED, what
        assert setting in str(data["error"]) and words in str(data["error"]), (what, data)
        ready = exporter.ready()
        assert ready["status"] == "False" and setting in ready["message"], (what, ready)
        assert exporter.metrics() == good, f"{what}: the last good snapshot is still served"
        leftovers = [p.name for p in (exporter.state / "snapshots").rglob("*") if p.name.startswith(".tmp")]
        assert leftovers == [], what

    peak = exporter.peak_rss_mib()
    print(f"exporter peak RSS after the bombs: {peak:.0f} MiB")
    assert peak < 512, "the bombs (up to 1 GiB each) were never held in memory"
    exporter.api.reply = Reply(200, GOOD, {"Content-Type": "text/csv"})
    kind, _ = exporter.cycle()
    assert kind == events.EXPORT_COMPLETED and exporter.ready()["status"] == "True"
