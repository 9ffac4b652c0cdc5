"""The local broker: routes CloudEvents exactly as the Triggers in knative/ say, on 127.0.0.1.

Ingress `POST /` takes a binary or structured CloudEvent (202, delivered in the background), or with
`?wait=true` (or header `X-Finops-Wait: true`) delivers the whole causal chain before answering with a
JSON summary of every delivery (200). Each Trigger whose `filter.attributes` all match exactly
(type, source, subject, extensions) gets the event in binary mode at its subscriber Service's local URL.
A 2xx answer that is itself a CloudEvent (ce-type header or structured body) is a reply and is
published back into the broker, like Knative's; a 2xx answer with any other non-empty body is a failed
delivery (Knative's broker filter answers 502 for it and retries), so functions answer empty or a CloudEvent. 5xx, 404, 408, 409, 429 and connection errors are
retried per the Trigger's `delivery` (retry, backoffPolicy, backoffDelay); then the event is
dead-lettered: appended as a JSON line to <state>/deadletter.jsonl. `GET /stats` gives the counters.

Callers: with a `token` (the supervisor's caller token), ingress takes only requests carrying
`Authorization: Bearer <token>` (401 otherwise, checked before the body is read; bodies over
MAX_BODY are refused with 413), and every delivery carries it, like Knative's broker with OIDC.
Without one (a test's bare broker) ingress is open and deliveries carry nothing.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from functions import events
from functions.errors import FinopsError
from functions.logs import get_logger

log = get_logger("local.broker")
RETRIABLE = {404, 408, 409, 429}
MAX_DEPTH = 16
MAX_BODY = 32 << 20  # one event; an aicost batch goes straight to the function, never through a broker
Resolver = Callable[[str], str | None]


@dataclass(frozen=True)
class Delivery:
    """Knative's delivery spec, as far as the local broker honours it."""

    retry: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: float = 0.2
    timeout: float = 600.0
    dead_letter: str = ""

    def delay(self, retry_number: int) -> float:
        if self.backoff_policy == "linear":
            return self.backoff_delay * retry_number
        return self.backoff_delay * float(2 ** max(retry_number - 1, 0))


@dataclass(frozen=True)
class Trigger:
    name: str
    broker: str
    filters: dict[str, str]
    service: str
    uri: str = ""
    delivery: Delivery = field(default_factory=Delivery)

    def matches(self, attrs: dict[str, str]) -> bool:
        return all(attrs.get(k) == v for k, v in self.filters.items())


@dataclass
class Result:
    """One delivery of one event to one Trigger's subscriber."""

    trigger: str
    subscriber: str
    event_id: str
    event_type: str
    depth: int
    ok: bool = False
    status: int | None = None
    attempts: int = 0
    reply_type: str | None = None
    reply_error: str | None = None  # what a `*.failed` reply says went wrong
    reply_rejected: int = 0  # rows the cycle kept out (received - stored), from the reply's data
    reply_received: int = 0
    reply_reasons: list[dict[str, Any]] = field(default_factory=list)  # the first of them: row, loc, value, msg
    error: str | None = None
    dead_lettered: bool = False


def parse_iso_duration(text: str) -> float:
    """ISO 8601 durations as Knative writes them (PT0.5S, PT1M30S, P1D) -> seconds."""
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def _delivery(spec: dict[str, Any] | None, default: Delivery) -> Delivery:
    if not spec:
        return default
    dls = (spec.get("deadLetterSink") or {})
    return Delivery(
        retry=int(spec.get("retry", default.retry)),
        backoff_policy=str(spec.get("backoffPolicy", default.backoff_policy)),
        backoff_delay=parse_iso_duration(spec["backoffDelay"]) if "backoffDelay" in spec else default.backoff_delay,
        timeout=parse_iso_duration(spec["timeout"]) if "timeout" in spec else default.timeout,
        dead_letter=str((dls.get("ref") or {}).get("name") or dls.get("uri") or default.dead_letter),
    )


def load_manifests(folder: Path | str) -> list[dict[str, Any]]:
    """Every YAML document of every *.yaml file in a folder (kustomization files excluded)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(Path(folder).glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict))
    return docs


def load_triggers(folder: Path | str, broker: str = "default") -> list[Trigger]:
    """The Triggers of one Broker, each with its delivery (the Broker's as the default)."""
    docs = load_manifests(folder)
    default = Delivery()
    for d in docs:
        if d.get("kind") == "Broker" and d.get("metadata", {}).get("name") == broker:
            default = _delivery(d.get("spec", {}).get("delivery"), default)
    out = []
    for d in docs:
        spec = d.get("spec", {})
        if d.get("kind") != "Trigger" or spec.get("broker", "default") != broker:
            continue
        sub = spec.get("subscriber", {})
        out.append(Trigger(
            name=d["metadata"]["name"], broker=broker,
            filters={k: str(v) for k, v in ((spec.get("filter") or {}).get("attributes") or {}).items()},
            service=str((sub.get("ref") or {}).get("name", "")), uri=str(sub.get("uri", "")),
            delivery=_delivery(spec.get("delivery"), default)))
    return out


def _attributes(event: events.Event) -> dict[str, str]:
    attrs = {"type": event.type, "source": event.source, "id": event.id, "specversion": "1.0"}
    if event.subject:
        attrs["subject"] = event.subject
    attrs.update({k: str(v) for k, v in event.extensions.items()})
    return attrs


def _event_json(event: events.Event) -> dict[str, Any]:
    data = event.data if not isinstance(event.data, bytes) else event.data.decode("utf-8", "replace")
    return {**_attributes(event), "time": event.time, "data": data}


class Broker:
    """Routes events by Triggers; thread-safe; `publish(event, wait=True)` returns every delivery."""

    def __init__(self, triggers: list[Trigger], resolve: Resolver, state_dir: Path | str,
                 token: Callable[[], str] | None = None) -> None:
        self.triggers = triggers
        self.resolve = resolve
        self.token = token or (lambda: "")
        self.deadletter_path = Path(state_dir) / "deadletter.jsonl"
        self.counters = {"received": 0, "delivered": 0, "failed": 0, "retries": 0, "dead_lettered": 0, "replies": 0,
                         "unrouted_replies": 0}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = httpx.Client(follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="broker")
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- serving -------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="broker-http", daemon=True).start()
        self.url = f"http://{host}:{self._server.server_address[1]}"
        log.info("broker listening", extra={"url": self.url, "triggers": [t.name for t in self.triggers]})
        return self.url

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # -- routing -------------------------------------------------------------------------------
    def publish(self, event: events.Event, wait: bool = False) -> list[Result]:
        """Ingress: deliver now and return the chain (wait), or in the background (returns [])."""
        self._count("received")
        if not wait:
            self._pool.submit(self._dispatch_logged, event)
            return []
        out: list[Result] = []
        self._dispatch(event, 0, out)
        return out

    def _dispatch_logged(self, event: events.Event) -> None:
        try:
            self._dispatch(event, 0, [])
        except Exception:  # a background delivery must never kill the pool thread silently
            log.exception("broker dispatch failed", extra={"event_id": event.id})

    def _dispatch(self, event: events.Event, depth: int, out: list[Result]) -> None:
        attrs = _attributes(event)
        matching = [t for t in self.triggers if t.matches(attrs)]
        if depth and not matching:
            self._count("unrouted_replies")  # a reply no Trigger takes ends its chain (e.g. export.failed)
        for trigger in matching:
            result, reply = self._deliver(trigger, event, depth)
            out.append(result)
            if reply is None:
                continue
            self._count("replies")
            if depth + 1 >= MAX_DEPTH:
                out.append(Result(trigger.name, trigger.service, reply.id, reply.type, depth + 1,
                                  error=f"reply chain deeper than {MAX_DEPTH}: dropped"))
                continue
            self._dispatch(reply, depth + 1, out)
        log.info("broker event routed", extra={"event_id": event.id, "type": event.type, "depth": depth,
                                                "counters": self.stats()})

    def _deliver(self, trigger: Trigger, event: events.Event, depth: int) -> tuple[Result, events.Event | None]:
        result = Result(trigger.name, trigger.service or trigger.uri, event.id, event.type, depth)
        url = self._subscriber_url(trigger)
        headers, body = events.to_binary(event)
        token = self.token()
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        reply: events.Event | None = None
        while url and not self._stopping.is_set():
            result.attempts += 1
            try:
                resp = self._http.post(url, headers=headers, content=body, timeout=trigger.delivery.timeout)
                result.status, result.error = resp.status_code, None
                if resp.is_success:
                    result.ok = True
                    reply = self._reply(resp, result)
                    if result.ok:
                        break
                    retriable = True
                else:
                    result.error = resp.text[:500]
                    retriable = resp.status_code >= 500 or resp.status_code in RETRIABLE
            except httpx.HTTPError as exc:
                result.status, result.error, retriable = None, f"{type(exc).__name__}: {exc}", True
            if not retriable or result.attempts > trigger.delivery.retry:
                break
            self._count("retries")
            self._stopping.wait(trigger.delivery.delay(result.attempts))
        if not url:
            result.error = f"no local URL for Service {trigger.service!r} (not started by the supervisor?)"
        self._count("delivered" if result.ok else "failed")
        if not result.ok:
            self._dead_letter(trigger, event, result)
        return result, reply

    def _subscriber_url(self, trigger: Trigger) -> str:
        if not trigger.service:
            return trigger.uri
        base = self.resolve(trigger.service)
        if not base:
            return ""
        return base.rstrip("/") + "/" + trigger.uri.lstrip("/") if trigger.uri else base

    def _reply(self, resp: httpx.Response, result: Result) -> events.Event | None:
        ctype = resp.headers.get("content-type", "")
        if "ce-type" not in resp.headers and "application/cloudevents" not in ctype:
            if resp.content:  # Knative's broker filter: 502, retried, then dead-lettered
                result.ok = False
                result.error = (f"HTTP {resp.status_code} with a non-empty body that is not a CloudEvent "
                                "(Knative's broker answers 502 and retries: reply empty or with a CloudEvent): "
                                f"{resp.text[:200]}")
            return None
        try:
            reply = events.from_http(dict(resp.headers), resp.content)
        except FinopsError as exc:
            result.error = f"reply is not a valid CloudEvent: {exc}"
            return None
        result.reply_type = reply.type
        data = reply.data if isinstance(reply.data, dict) else {}
        if isinstance(data.get("rejected"), int) and data["rejected"] > 0:
            result.reply_rejected, result.reply_received = data["rejected"], int(data.get("received") or 0)
            result.reply_reasons = [r for r in data.get("reasons") or [] if isinstance(r, dict)][:5]
        if reply.type.endswith(".failed"):  # the delivery worked, the cycle did not: say why
            data = reply.data if isinstance(reply.data, dict) else {}
            fields = "; ".join(f"{e.get('loc')}: {e.get('msg')}" for e in data.get("errors") or [] if isinstance(e, dict))
            result.reply_error = str(data.get("error") or reply.type) + (f" ({fields})" if fields else "")
        return reply

    def _dead_letter(self, trigger: Trigger, event: events.Event, result: Result) -> None:
        result.dead_lettered = True
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "trigger": trigger.name,
                           "sink": trigger.delivery.dead_letter, "result": asdict(result), "event": _event_json(event)},
                          default=str)
        with self._lock:
            self.counters["dead_lettered"] += 1
            self.deadletter_path.parent.mkdir(parents=True, exist_ok=True)
            with self.deadletter_path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        log.warning("event dead-lettered", extra={"trigger": trigger.name, "event_id": event.id,
                                                   "status": result.status, "error": result.error})

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)


def summary(event: events.Event, results: list[Result]) -> dict[str, Any]:
    """The `?wait=true` answer: every delivery of the chain, and how many failed."""
    failed = sum(1 for r in results if not r.ok)
    return {"event": {"id": event.id, "type": event.type}, "ok": failed == 0, "failed": failed,
            "deliveries": [asdict(r) for r in results]}


def _handler(broker: Broker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = urlsplit(self.path).path
            if path in ("/stats", "/healthz", "/"):
                self._answer(200, {"ok": True, "counters": broker.stats(), "triggers": [t.name for t in broker.triggers]})
            else:
                self._answer(404, {"error": f"no such path {path}"})

        def do_POST(self) -> None:  # noqa: N802
            refusal = self._refusal()
            if refusal is not None:
                self.close_connection = True  # the body is never read
                self._answer(*refusal)
                return
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            query = parse_qs(urlsplit(self.path).query)
            wait = query.get("wait", [""])[0].lower() in ("1", "true", "yes") or \
                self.headers.get("x-finops-wait", "").lower() in ("1", "true", "yes")
            try:
                event = events.from_http(dict(self.headers.items()), body)
            except FinopsError as exc:
                self._answer(400, exc.body())
                return
            results = broker.publish(event, wait=wait)
            if wait:
                self._answer(200, summary(event, results))
            else:
                self._answer(202, {"accepted": event.id})

        def _refusal(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
            """401 without the caller token, 411 without a Content-Length, 413 over MAX_BODY: from headers only."""
            token = broker.token()
            sent = self.headers.get("authorization") or ""
            if token and not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return 401, {"error": "authentication required: send `Authorization: Bearer <token>` (the local "
                                      "stack's caller token: <state>/auth/token)"}, {"WWW-Authenticate": 'Bearer realm="finops"'}
            length = self.headers.get("content-length")
            if length is None or not length.strip().isdigit():
                return 411, {"error": "the broker needs a Content-Length (one event, not a chunked stream)"}, {}
            if int(length) > MAX_BODY:
                return 413, {"error": f"the broker takes one event with a Content-Length of at most {MAX_BODY} bytes"}, {}
            return None

        def _answer(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj, default=str).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # JSON logs only
            return

    return Handler
