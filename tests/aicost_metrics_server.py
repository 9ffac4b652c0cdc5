"""The aicost_metrics target of functions/main.py on 127.0.0.1, beside a running aicost (tests/aicost_server.py).

`start_metrics(aicost)` starts it on the same CR store and database handler, so it reads the same
durable totals; `Metrics.scrape()` GETs /metrics and parses it with prometheus_client's parser.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
from aicost_server import MAIN, AICost
from dbhandler_server import AUTH, start_function, stop_process
from prometheus_client.parser import text_string_to_metric_families

from functions.local.supervisor import free_port


@dataclass
class Metrics:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """{(sample name, sorted labels): value} of one GET /metrics."""
        resp = httpx.get(self.url + "/metrics", headers=AUTH, timeout=30)
        resp.raise_for_status()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(resp.text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def stop(self) -> None:
        stop_process(self.process)


def start_metrics(aicost: AICost) -> Metrics:
    port = free_port()
    log = aicost.state_dir.parent / f"aicost-metrics-{port}.log"
    env = {"FINOPS_STATE_DIR": str(aicost.state_dir), "FINOPS_KUBE": "local",
           "FINOPS_DBHANDLER_URL": aicost.db.url, "K_SERVICE": "aicost-metrics"}
    return Metrics(f"http://127.0.0.1:{port}", start_function("aicost_metrics", port, env, log, MAIN), log)
