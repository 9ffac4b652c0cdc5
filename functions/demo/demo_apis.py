"""Demo data sources on 127.0.0.1: a FOCUS cost export, Azure Monitor metrics, a foreign exposition.

Why real servers: the demo and the tests exercise the exporter's actual HTTP path (auth headers,
content-type dispatch, gzip, streaming) against sources that behave like the clouds', with no network.
Each server runs a ThreadingHTTPServer on port 0 in a daemon thread; `.url` is its base URL.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import json
import re
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from functions.demo.focus_rows import period_label, write_focus_csv, write_rows_csv

CSV_TYPE = "text/csv; charset=utf-8"
GZIP_TYPE = "binary/octet-stream"
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_CHUNK = 1 << 16

Reply = tuple[int, dict[str, str], bytes | Path]
Route = Callable[[str, dict[str, list[str]], dict[str, str]], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, out_headers, body = self.server.route(
                urllib.parse.unquote(parsed.path), urllib.parse.parse_qs(parsed.query), headers)
        except Exception as exc:  # a demo server answers 500 instead of dropping the connection
            status, out_headers, body = 500, {"Content-Type": "text/plain"}, f"internal error: {exc}".encode()
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        size = body.stat().st_size if isinstance(body, Path) else len(body)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if head:
            return
        if isinstance(body, Path):
            with body.open("rb") as fh:
                shutil.copyfileobj(fh, self.wfile, _CHUNK)
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base-class signature)
        """Quiet: the demo prints its own progress."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, route: Route) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.route = route


class _Base:
    """Start/stop plumbing shared by the demo servers; usable as a context manager."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is None:
            self._server = _Server(self.route)
            self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _text(status: int, message: str, extra: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "text/plain; charset=utf-8", **(extra or {})}, (message + "\n").encode()


def _json(status: int, obj: Any) -> Reply:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(obj).encode()


class DemoCostApi(_Base):
    """A FOCUS 1.0 cost export behind a bearer token.

    GET /focus/export.csv (alias /focus/costs.csv): text/csv, streamed from a file; `?period=YYYY-MM`
    narrows it to one billing period (`current`, `all` or none = everything).
    GET /focus/export.csv.gz: the same bytes gzipped, as S3 serves them (binary/octet-stream).
    `publish(rows)` swaps in new data (e.g. a restated period) for the next request.
    """

    PATHS = ("/focus/export.csv", "/focus/costs.csv")

    def __init__(self, rows: int = 2000, *, seed: int = 0, token: str = "demo-cost-token",
                 data_dir: Path | str | None = None) -> None:
        super().__init__()
        self.token = token
        self._tmp = tempfile.TemporaryDirectory(prefix="finops-demo-cost-") if data_dir is None else None
        self.data_dir = Path(self._tmp.name if self._tmp else str(data_dir))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._version = 0
        self._files: dict[str, Path] = {}
        self.requests = 0
        self._install(lambda p: write_focus_csv(p, rows, seed))

    def publish(self, rows: Iterable[dict[str, str]]) -> None:
        """Serve these rows (FOCUS_COLUMNS order) from now on."""
        materialized = list(rows)
        self._install(lambda p: write_rows_csv(p, materialized))

    def _install(self, write: Callable[[Path], int]) -> None:
        with self._lock:
            self._version += 1
            version = self._version
        full = self.data_dir / f"export-{version}.csv"
        write(full)
        files = {"all": full}
        files.update(_split_periods(full, self.data_dir, version))
        gz = full.with_suffix(".csv.gz")
        with full.open("rb") as src, gzip.open(gz, "wb", compresslevel=5) as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        files["gz"] = gz
        with self._lock:
            self._files = files  # old files stay until stop(): a download in flight keeps reading them

    @property
    def csv_path(self) -> Path:
        return self._files["all"]

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        if headers.get("authorization", "") != f"Bearer {self.token}":
            return _text(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="demo-cost-api"'})
        self.requests += 1
        with self._lock:
            files = self._files
        if path == "/focus/export.csv.gz":
            return 200, {"Content-Type": GZIP_TYPE}, files["gz"]
        if path not in self.PATHS:
            return _text(404, f"no such export: {path}")
        period = (query.get("period") or ["all"])[0]
        if period in ("", "all", "current"):
            return 200, {"Content-Type": CSV_TYPE}, files["all"]
        if period not in files:
            return _text(404, f"no billing period {period!r}; have {sorted(k for k in files if k[:1].isdigit())}")
        return 200, {"Content-Type": CSV_TYPE}, files[period]

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _split_periods(full: Path, folder: Path, version: int) -> dict[str, Path]:
    """One file per billing period (header repeated), so `?period=` is served as a plain file."""
    out: dict[str, Path] = {}
    handles: dict[str, Any] = {}
    writers: dict[str, Any] = {}
    try:
        with full.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            for row in reader:
                label = period_label(row)
                if label not in writers:
                    out[label] = folder / f"export-{version}-{label}.csv"
                    handles[label] = out[label].open("w", newline="", encoding="utf-8")
                    writers[label] = csv.DictWriter(handles[label], fields, lineterminator="\n")
                    writers[label].writeheader()
                writers[label].writerow(row)
    finally:
        for h in handles.values():
            h.close()
    return out


# -- Azure Monitor ------------------------------------------------------------------------------

METRIC_UNITS: dict[str, tuple[str, float, float]] = {
    # name: (unit, low, high) of the hourly average
    "Percentage CPU": ("Percent", 3.0, 85.0),
    "Available Memory Bytes": ("Bytes", 1.5e9, 14e9),
    "Network In Total": ("Bytes", 1e6, 9e8),
    "Network Out Total": ("Bytes", 1e6, 6e8),
    "Disk Read Bytes": ("Bytes", 0.0, 5e8),
    "Disk Write Bytes": ("Bytes", 0.0, 7e8),
    "OS Disk IOPS Consumed Percentage": ("Percent", 0.0, 40.0),
}
_METRICS_RE = re.compile(r"^(?P<rid>/subscriptions/.+?)/providers/microsoft\.insights/metrics/?$", re.IGNORECASE)
_INTERVALS = {"PT1M": 1, "PT5M": 5, "PT15M": 15, "PT30M": 30, "PT1H": 60, "PT6H": 360, "PT12H": 720, "P1D": 1440}


class DemoUsageApi(_Base):
    """Azure Monitor metrics (`<resourceId>/providers/Microsoft.Insights/metrics`) behind basic auth.

    Values are a pure function of (resource, metric, timestamp), so re-fetching a window gives the
    same numbers. Query: `metricnames` (comma-separated), `interval` (PT1M..P1D, default PT1H),
    `timespan` (`start/end` ISO 8601; default the 24 hours before `end`, which defaults to the
    current hour).
    """

    def __init__(self, *, username: str = "demo", password: str = "demo-usage-password",
                 end: datetime | None = None, hours: int = 24) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.end = end
        self.hours = hours
        self.requests = 0

    def _authorized(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, pwd = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user, self.username) and hmac.compare_digest(pwd, self.password)

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        if not self._authorized(headers.get("authorization", "")):
            return _text(401, "basic authentication required", {"WWW-Authenticate": 'Basic realm="demo-usage-api"'})
        self.requests += 1
        m = _METRICS_RE.match(path)
        if m is None:
            return _json(404, {"error": {"code": "ResourceNotFound", "message": f"no metrics route {path}"}})
        names = [n.strip() for n in ",".join(query.get("metricnames") or ["Percentage CPU"]).split(",") if n.strip()]
        unknown = [n for n in names if n not in METRIC_UNITS]
        if unknown:
            return _json(400, {"code": "BadRequest", "message": f"Failed to find metric configuration for {unknown}"})
        interval = (query.get("interval") or ["PT1H"])[0].upper()
        if interval not in _INTERVALS:
            return _json(400, {"code": "BadRequest", "message": f"Invalid interval {interval}"})
        try:
            start, end = self._window((query.get("timespan") or [""])[0])
        except ValueError as exc:
            return _json(400, {"code": "BadRequest", "message": str(exc)})
        return _json(200, metrics_document(m.group("rid"), names, start, end, _INTERVALS[interval]))

    def _window(self, timespan: str) -> tuple[datetime, datetime]:
        if timespan:
            a, _, b = timespan.partition("/")
            start, end = _parse_time(a), _parse_time(b)
            if end <= start:
                raise ValueError(f"timespan end before start: {timespan}")
            return start, end
        end = self.end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        return end - timedelta(hours=self.hours), end


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"bad time in timespan: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def metric_value(resource_id: str, metric: str, at: datetime) -> float:
    """A deterministic, plausible average for one point (daily shape plus per-point noise)."""
    low, high = METRIC_UNITS[metric][1:]
    digest = hashlib.sha256(f"{resource_id.lower()}|{metric}|{at.isoformat()}".encode()).digest()
    noise = int.from_bytes(digest[:4], "big") / 2**32
    daily = 0.5 + 0.35 * (1 if 8 <= at.hour < 20 else -1) * (0.5 + noise / 2)
    return round(low + (high - low) * min(1.0, max(0.0, daily + (noise - 0.5) * 0.2)), 4)


def metrics_document(resource_id: str, names: list[str], start: datetime, end: datetime, minutes: int) -> dict[str, Any]:
    """The Azure Monitor `Metrics - List` response for one resource."""
    step = timedelta(minutes=minutes)
    stamps = []
    t = start
    while t < end:
        stamps.append(t)
        t += step
    iso = "%Y-%m-%dT%H:%M:%SZ"
    interval = next(k for k, v in _INTERVALS.items() if v == minutes)
    value = []
    for name in names:
        unit = METRIC_UNITS[name][0]
        value.append({
            "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{name}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": name, "localizedValue": name},
            "displayDescription": f"{name} of the virtual machine",
            "unit": unit,
            "timeseries": [{"metadatavalues": [], "data": [
                {"timeStamp": s.strftime(iso), "average": metric_value(resource_id, name, s)} for s in stamps]}],
            "errorCode": "Success",
        })
    return {
        "cost": len(stamps) * len(names),
        "timespan": f"{start.strftime(iso)}/{end.strftime(iso)}",
        "interval": interval,
        "value": value,
        "namespace": "Microsoft.Compute/virtualMachines",
        "resourceregion": "westeurope",
    }


# -- a foreign Prometheus exposition ----------------------------------------------------------------

NODE_EXPORTER_TEXT = """\
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.42
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 8.253440e+09
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/nvme0n1p1",fstype="ext4",mountpoint="/"} 4.2781696e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1.651007488e+09
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 123456.78
node_cpu_seconds_total{cpu="0",mode="user"} 2345.6
node_cpu_seconds_total{cpu="1",mode="idle"} 123001.02
node_cpu_seconds_total{cpu="1",mode="user"} 2401.9
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{machine="x86_64",nodename="worker-1",release="6.8.0-45-generic",sysname="Linux",version="#45-Ubuntu SMP \\"PREEMPT_DYNAMIC\\""} 1
# HELP demo_requests_total Requests served by the demo service.
# TYPE demo_requests_total counter
demo_requests_total{code="200",method="GET",path="/api/orders"} 1027
demo_requests_total{code="500",method="GET",path="/api/orders"} 3
demo_requests_total{code="200",method="POST",path="/api/orders"} 311
# HELP demo_request_duration_seconds Request latency.
# TYPE demo_request_duration_seconds histogram
demo_request_duration_seconds_bucket{le="0.1"} 1201
demo_request_duration_seconds_bucket{le="0.5"} 1330
demo_request_duration_seconds_bucket{le="+Inf"} 1341
demo_request_duration_seconds_sum 97.31
demo_request_duration_seconds_count 1341
# HELP demo_temperature_celsius Room temperature, with a NaN reading.
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius{room="lab"} NaN
demo_temperature_celsius{room="office",note="line\\nbreak and \\\\ backslash"} 21.5
"""


class PrometheusTextApi(_Base):
    """A node-exporter-like `/metrics` (text format 0.0.4), optionally behind a bearer token."""

    def __init__(self, body: str | bytes = NODE_EXPORTER_TEXT, *, token: str | None = None) -> None:
        super().__init__()
        self.body = body.encode() if isinstance(body, str) else body
        self.token = token
        self.requests = 0

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        if self.token is not None and headers.get("authorization", "") != f"Bearer {self.token}":
            return _text(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="metrics"'})
        if path != "/metrics":
            return _text(404, f"no such path: {path}")
        self.requests += 1
        return 200, {"Content-Type": PROM_TYPE}, self.body
