"""`finops events generate`: realistic AI/ML cost events (GPU jobs, LLM API calls, bursts) as CloudEvents.

Why simulated and seeded: the demo, the tests and the benchmark need a stream that looks like a real
platform's (a few teams and projects, mostly small LLM calls, some long multi-GPU training jobs,
bursts: a token spike or a misconfigured 64-GPU job) and that is the SAME for the same seed, so
re-sending it must not change any total (event ids are derived from the seed).

Events are `io.finops.aicost.usage` with data per functions.models.aicost.AICostUsage. They are
sent batched (`application/cloudevents-batch+json`, a JSON array of structured CloudEvents built
with functions.events) straight to the aicost function, or one by one in binary mode to a Broker
(Knative's Broker, and the local one, take single events only).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from functions import events

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SOURCE = "/finops/producer"
TEAMS: dict[str, tuple[str, ...]] = {
    "ml-platform": ("recsys", "search-ranking"),
    "research": ("llm-pretrain", "vision"),
    "support": ("chat-assistant",),
    "marketing": ("copywriter",),
}
LLM_MODELS: tuple[tuple[str, str], ...] = (
    ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku"), ("google", "gemini-2.0-flash"),
)
TRAINING_GPUS = ("H100", "A100-80GB", "H200")
INFERENCE_GPUS = ("L4", "A10G", "T4")
_NAMESPACE = uuid.UUID("5b0c2c8e-7a55-4c4b-9f0e-a1c0517c0de5")


@dataclass
class Generator:
    """A seeded stream of AI cost event payloads (CloudEvent dicts, structured mode)."""

    seed: int = 0
    burst_chance: float = 0.002
    """Chance, per event, that a burst starts (a token spike or a runaway multi-GPU job)."""
    _rng: random.Random = field(init=False, repr=False)
    _count: int = field(default=0, init=False)
    _burst_left: int = field(default=0, init=False)
    _burst: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def event(self, when: datetime) -> dict[str, Any]:
        """The next event, at time `when`, as a structured CloudEvent dict."""
        self._count += 1
        event_id = str(uuid.uuid5(_NAMESPACE, f"{self.seed}/{self._count}"))
        data = self._burst_data() if self._in_burst() else self._normal_data()
        return {"specversion": "1.0", "type": events.AICOST_USAGE, "source": SOURCE, "id": event_id,
                "time": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "datacontenttype": "application/json", "data": data}

    def _in_burst(self) -> bool:
        if self._burst_left > 0:
            self._burst_left -= 1
            return True
        if self._rng.random() < self.burst_chance:
            team = self._rng.choice(sorted(TEAMS))
            self._burst = {"team": team, "project": self._rng.choice(TEAMS[team]),
                           "kind": self._rng.choice(("token-spike", "runaway-gpu-job"))}
            self._burst_left = self._rng.randint(20, 200)
            return True
        return False

    def _who(self) -> tuple[str, str]:
        team = self._rng.choices(sorted(TEAMS), weights=(4, 2, 3, 1))[0]
        return team, self._rng.choice(TEAMS[team])

    def _normal_data(self) -> dict[str, Any]:
        team, project = self._who()
        roll = self._rng.random()
        if roll < 0.80:
            return {"team": team, "project": project, "source": "llm-api", "llm": self._llm(1.0),
                    "request_id": f"req-{self._rng.getrandbits(40):010x}"}
        if roll < 0.95:
            return {"team": team, "project": project, "source": "inference", "gpu": {
                "gpu_type": self._rng.choice(INFERENCE_GPUS), "count": 1,
                "duration_seconds": str(self._rng.randint(30, 900))}, "cluster": "gpu-eu-1"}
        return {"team": team, "project": project, "source": "gpu-job", "gpu": {
            "gpu_type": self._rng.choice(TRAINING_GPUS), "count": self._rng.choice((1, 2, 4, 8)),
            "duration_seconds": str(self._rng.randint(600, 4 * 3600))},
            "job": f"train-{self._rng.getrandbits(24):06x}", "cluster": "gpu-us-1"}

    def _burst_data(self) -> dict[str, Any]:
        b = self._burst
        if b["kind"] == "token-spike":
            return {"team": b["team"], "project": b["project"], "source": "llm-api", "llm": self._llm(25.0),
                    "burst": "token-spike"}
        return {"team": b["team"], "project": b["project"], "source": "gpu-job", "gpu": {
            "gpu_type": "H100", "count": 64, "duration_seconds": "300"}, "burst": "runaway-gpu-job",
            "job": "misconfigured-sweep"}

    def _llm(self, scale: float) -> dict[str, Any]:
        provider, model = self._rng.choice(LLM_MODELS)
        prompt = int(self._rng.lognormvariate(7.0, 1.0) * scale) + 1
        cached = int(prompt * self._rng.choice((0.0, 0.0, 0.5, 0.9)))
        written = int((prompt - cached) * 0.5) if provider == "anthropic" and self._rng.random() < 0.2 else 0
        return {"provider": provider, "model": model, "input_tokens": prompt,
                "output_tokens": int(self._rng.lognormvariate(5.5, 0.8) * scale) + 1,
                "cache_read_tokens": cached, "cache_write_tokens": written}

    def batch(self, n: int, start: datetime, spacing: timedelta = timedelta(0)) -> list[dict[str, Any]]:
        """n events, times start, start+spacing, ..."""
        return [self.event(start + spacing * i) for i in range(n)]


def encode_batch(items: Sequence[dict[str, Any]]) -> bytes:
    """A JSON array of structured CloudEvents, each encoded by functions.events (the SDK)."""
    bodies = [events.to_structured(_as_event(item))[1] for item in items]
    return b"[" + b",".join(bodies) + b"]"


def _as_event(item: dict[str, Any]) -> events.Event:
    return events.Event(type=item["type"], source=item["source"], data=item["data"], id=item["id"], time=item["time"])


@dataclass
class SendReport:
    """What a run sent and what the receiver said."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    conflicted: int = 0
    """Events whose id is already stored with other content (e.g. the same seed at other times)."""
    failed_requests: int = 0
    alerts: int = 0
    seconds: float = 0.0
    by_source: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def text(self) -> str:
        sources = ", ".join(f"{k} {v}" for k, v in sorted(self.by_source.items()))
        out = (f"sent {self.sent} events in {self.seconds:.1f}s ({self.rate:,.0f}/s): accepted {self.accepted}, "
               f"rejected {self.rejected}, conflicted {self.conflicted}, failed requests {self.failed_requests}, "
               f"budget alerts {self.alerts} ({sources})")
        return "\n".join([out, *self.problems[:5]])


class Sender:
    """POST batches to the aicost function (batch > 1) or single binary events (batch == 1, e.g. to a Broker)."""

    def __init__(self, target: str, batch: int = 100, timeout: float = 60.0,
                 headers: Mapping[str, str] | None = None) -> None:
        """`headers`: the caller token (`Authorization: Bearer`) the function or broker requires."""
        self.target, self.batch = target, max(1, batch)
        self.client = httpx.Client(timeout=timeout, headers=dict(headers or {}))

    def close(self) -> None:
        self.client.close()

    def send(self, items: Sequence[dict[str, Any]], report: SendReport) -> None:
        began = time.monotonic()
        try:
            self._send(items, report)
        finally:
            report.seconds += time.monotonic() - began

    def _send(self, items: Sequence[dict[str, Any]], report: SendReport) -> None:
        for start in range(0, len(items), self.batch):
            chunk = items[start:start + self.batch]
            if self.batch == 1:
                headers, body = events.to_binary(_as_event(chunk[0]))
            else:
                headers, body = {"content-type": BATCH_CONTENT_TYPE}, encode_batch(chunk)
            self._post(headers, body, chunk, report)

    def _post(self, headers: dict[str, str], body: bytes, chunk: Sequence[dict[str, Any]], report: SendReport) -> None:
        report.sent += len(chunk)
        report.by_source.update(str(i["data"].get("source")) for i in chunk)
        try:
            resp = self.client.post(self.target, headers=headers, content=body)
        except httpx.HTTPError as exc:
            report.failed_requests += 1
            report.problems.append(f"{self.target}: {type(exc).__name__}: {exc}")
            return
        answer = _json(resp)
        if resp.status_code == 422 and str(answer.get("error", "")).startswith("conflict"):  # reported, not a failure
            report.conflicted += sum(1 for e in answer.get("errors") or [] if "conflict" in str(e.get("msg"))) or len(chunk)
            return
        if resp.status_code >= 300:
            report.failed_requests += 1
            report.rejected += len(chunk) if resp.status_code == 400 else 0
            report.problems.append(f"HTTP {resp.status_code}: {resp.text[:300]}")
            return
        report.accepted += int(answer.get("accepted", len(chunk)))
        report.rejected += int(answer.get("rejected", 0))
        report.conflicted += int(answer.get("conflicted", 0))
        report.alerts += len(answer.get("alerts") or [])


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        value = resp.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def schedule(rate: float, duration: float, batch: int) -> Iterator[tuple[float, int]]:
    """(offset in seconds, events) of each send: `rate` events/s for `duration` s, in batches."""
    total = max(1, round(rate * duration))
    sent = 0
    while sent < total:
        n = min(batch, total - sent)
        yield sent / rate if rate > 0 else 0.0, n
        sent += n


def generate(target: str, rate: float, duration: float, batch: int = 100, seed: int | None = None,
             start: datetime | None = None, headers: Mapping[str, str] | None = None) -> SendReport:
    """Send `rate` events/s for `duration` seconds to `target`, paced; event times = send times
    (or from `start` on, spaced 1/rate apart, for a reproducible stream). No seed: fresh event ids."""
    gen = Generator(seed if seed is not None else random.SystemRandom().randrange(2**62))
    sender, report = Sender(target, batch, headers=headers), SendReport()
    spacing = timedelta(seconds=1 / rate) if rate > 0 else timedelta(0)
    began = time.monotonic()
    try:
        for offset, n in schedule(rate, duration, sender.batch):
            wait = began + offset - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            when = (start + spacing * report.sent) if start is not None else datetime.now(UTC)
            sender.send(gen.batch(n, when, spacing if start is not None else timedelta(0)), report)
    finally:
        sender.close()
    report.seconds = time.monotonic() - began
    return report
