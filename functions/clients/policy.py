"""The optimizer's policy decision, asked of a real OPA engine (as Krateo's opa-chart runs
finops-moving-window-policy-chart): policies/optimizer.rego.

Python computes the proposals (rightsizing windows, carbon-aware placement); OPA decides what is
written and applies the guardrails (listed kinds, opt-out label, clamping, minimum delta, allowed
regions). Two engines answer the same `PolicyEngine.decide(input)`:
- `OpaServer`: an OPA server's Data API, `POST {url}/v1/data/finops/optimizer` with `{"input": ...}`
  (in a cluster; FINOPS_OPA_URL names it);
- `EmbeddedOpa`: the OPA Go engine in-process (PyPI `opa-golib-python-bindings`, module
  `opa_bindings`), loading `*.rego` (not `*_test.rego`) and `data.json` from a policy directory
  (tests, the local stack, and the image when no server is configured).
Both return `{"applies": bool, "decision": {"mutate", "rightsizing", "placement", "reasons"}}` (only
those two keys of the document); a document without a decision (a policy where nothing applies) gets a
non-mutating one.

The bindings are imported lazily: they are installed apart from the project (their metadata claims
Python >= 3.14 but they run on 3.11, so `pip install --ignore-requires-python`). No opa_bindings or
httpx exception escapes: a missing package, a bad policy directory, an evaluation error, an OPA
server down, slow or answering non-200 -> Unavailable; an input that is not JSON -> InvalidInput.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from functions.errors import InvalidInput, Unavailable
from functions.logs import get_logger

log = get_logger("clients.policy")

PACKAGE = "finops.optimizer"
DATA_PATH = "/v1/data/finops/optimizer"
POLICY_DIR_ENV = "FINOPS_POLICY_DIR"
OPA_URL_ENV = "FINOPS_OPA_URL"
IMAGE_POLICY_DIR = Path("/app/policies")  # where the Containerfile copies policies/
INSTALL_HINT = (
    "the embedded OPA engine is not installed: "
    "pip install --ignore-requires-python 'opa-golib-python-bindings>=0.4,<0.5' "
    f"(or set {OPA_URL_ENV} to an OPA server)"
)
ERROR_BODY_CHARS = 2048
# One fixed query (the bindings cache a prepared query per distinct string).
_QUERY = f"result := {{\"applies\": data.{PACKAGE}.applies, \"decision\": data.{PACKAGE}.decision}}"
_APPLIES_QUERY = f"result := data.{PACKAGE}.applies"  # ≈0.16 ms, where the decision with 10 items is ≈1.1 ms
_PACKAGE_LINE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)


class PolicyEngine(Protocol):
    """Anything that evaluates data.finops.optimizer for an input."""

    def applies(self, input: Mapping[str, Any]) -> bool:
        """`data.finops.optimizer.applies` alone: cheap, asked before any data is fetched."""
        ...

    def decide(self, input: Mapping[str, Any]) -> dict[str, Any]:
        """`{"applies": bool, "decision": {"mutate", "rightsizing", "placement", "reasons"}}`."""
        ...


def _normalise(document: Any, where: str) -> dict[str, Any]:
    """The document with a boolean `applies` and a decision that never mutates when nothing applies."""
    if not isinstance(document, dict):
        raise Unavailable(f"{where}: data.{PACKAGE} is not an object: {str(document)[:200]}")
    applies = document.get("applies") is True
    decision = document.get("decision")
    if not isinstance(decision, dict):
        reason = "the optimizer does not apply" if not applies else f"data.{PACKAGE}.decision is undefined"
        decision = {"mutate": False, "rightsizing": None, "placement": None, "reasons": [reason]}
    elif not applies and decision.get("mutate"):
        decision = {**decision, "mutate": False}
    return {"applies": applies, "decision": decision}


# ------------------------------------------------------------------ policy directory


def policy_dir_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where the policies are looked for, in order: FINOPS_POLICY_DIR, the source checkout, the image."""
    env = os.environ if environ is None else environ
    configured = env.get(POLICY_DIR_ENV, "").strip()
    if configured:
        return [Path(configured)]
    return [Path(__file__).resolve().parents[2] / "policies", IMAGE_POLICY_DIR]


def resolve_policy_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The first candidate holding a `*.rego` file; Unavailable names every place looked at."""
    candidates = policy_dir_candidates(environ)
    for candidate in candidates:
        if candidate.is_dir() and any(_policy_files(candidate)):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise Unavailable(f"no OPA policies (*.rego) found; looked in: {looked} (set {POLICY_DIR_ENV})")


def _policy_files(root: Path, *, tests: bool = False) -> Iterator[Path]:
    for path in sorted(root.rglob("*.rego")):
        if path.name.endswith("_test.rego") == tests:
            yield path


# ------------------------------------------------------------------ embedded engine


def _bindings() -> Any:
    try:
        import opa_bindings
    except ImportError as exc:  # also an unloadable libopabridge.so
        raise Unavailable(f"{INSTALL_HINT}: {exc}") from exc
    return opa_bindings


class EmbeddedOpa:
    """The OPA Go engine in-process, loaded once from a policy directory; safe to share between threads.

    Thread safety: the bindings serialise every evaluation of one engine with their own lock; this class
    keeps a few engines (each loaded alike in `__init__`, before it is shared) and lends one per call.
    """

    def __init__(self, policy_dir: Path | str | None = None, engines: int | None = None) -> None:
        self.policy_dir = Path(policy_dir) if policy_dir is not None else resolve_policy_dir()
        self._opa = _bindings()
        # The bindings serialise the evaluations of one engine (and release the GIL while the Go engine
        # runs): a few engines let concurrent admissions evaluate in parallel.
        count = engines if engines is not None else max(2, min(4, os.cpu_count() or 2))
        self._engines = [self._load(tests=False) for _ in range(count)]
        self._engine = self._engines[0]
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for engine in self._engines:
            self._idle.put(engine)

    def _load(self, *, tests: bool) -> Any:
        root = self.policy_dir
        if not root.is_dir():
            raise Unavailable(f"OPA policy directory {root} does not exist (set {POLICY_DIR_ENV})")
        files = list(_policy_files(root))
        if not files:
            raise Unavailable(f"OPA policy directory {root} holds no *.rego policy")
        if tests:
            files += list(_policy_files(root, tests=True))
        try:
            engine = self._opa.OpaEngine()
            engine.print_handler = _log_print
            for path in files:
                engine.add_policy(path.relative_to(root).as_posix(), path.read_text(encoding="utf-8"))
            data_file = root / "data.json"
            if data_file.is_file():
                engine.add_data(json.loads(data_file.read_text(encoding="utf-8")))
        except self._opa.OpaError as exc:
            raise Unavailable(f"OPA policies in {root} do not load: {exc}") from exc
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise Unavailable(f"OPA policies in {root} cannot be read: {exc}") from exc
        log.debug("loaded OPA policies", extra={"policy_dir": str(root), "files": [p.name for p in files]})
        return engine

    def decide(self, input: Mapping[str, Any]) -> dict[str, Any]:
        where = f"embedded OPA ({self.policy_dir})"
        bindings = self._eval(_QUERY, input, where)
        if not bindings or "result" not in bindings[0]:
            raise Unavailable(f"{where}: data.{PACKAGE}.applies is undefined: is package {PACKAGE} loaded?")
        return _normalise(bindings[0]["result"], where)

    def applies(self, input: Mapping[str, Any]) -> bool:
        bindings = self._eval(_APPLIES_QUERY, input, f"embedded OPA ({self.policy_dir})")
        return bool(bindings) and bindings[0].get("result") is True

    def _eval(self, query: str, input: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
        engine = self._idle.get()
        try:
            result: list[dict[str, Any]] = engine.eval_query(query, dict(input))
            return result
        except self._opa.OpaError as exc:
            if getattr(exc, "code", "") == "invalid_argument":
                raise InvalidInput(f"policy input is not valid JSON text: {exc.message}") from exc
            raise Unavailable(f"{where}: evaluation failed: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"policy input is not JSON: {exc}") from exc
        finally:
            self._idle.put(engine)

    def run_tests(self) -> dict[str, bool]:
        """Every `test_*` rule of the `*_test.rego` files, evaluated on a separate engine: {"pkg.rule": passed}.

        A rule passes when it evaluates to true; false, undefined or an evaluation error fail it (the
        error is logged). Rules are found per file as lines starting with `test_`, as `opa test` does.
        """
        engine = self._load(tests=True)
        results: dict[str, bool] = {}
        try:
            for path in _policy_files(self.policy_dir, tests=True):
                source = path.read_text(encoding="utf-8")
                package = _PACKAGE_LINE.search(source)
                if package is None:
                    raise Unavailable(f"{path}: no package line")
                for rule in dict.fromkeys(_TEST_RULE.findall(source)):
                    name = f"{package.group(1)}.{rule}"
                    results[name] = self._passes(engine, name)
        finally:
            engine.close()
        return results

    def _passes(self, engine: Any, name: str) -> bool:
        try:
            return bool(engine.eval_document(name) is True)
        except self._opa.OpaUndefinedError:
            return False
        except self._opa.OpaError as exc:
            log.warning("Rego test failed with an error", extra={"test": name, "error": str(exc)})
            return False

    def close(self) -> None:
        for engine in self._engines:
            engine.close()


def _log_print(message: str, location: str) -> None:
    log.debug("rego print", extra={"rego_message": message, "location": location})


# ------------------------------------------------------------------ OPA server


class OpaServer:
    """An OPA server's Data API; one pooled httpx client, safe to share between threads."""

    def __init__(self, url: str, timeout: float = 1.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/") + DATA_PATH
        self._client = client or httpx.Client(timeout=timeout)
        self._timeout = timeout

    def decide(self, input: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._post(self.url, input)
        if "result" not in answer:
            raise Unavailable(f"POST {self.url}: data.{PACKAGE} is undefined: is package {PACKAGE} loaded?")
        return _normalise(answer["result"], f"POST {self.url}")

    def applies(self, input: Mapping[str, Any]) -> bool:
        return self._post(self.url + "/applies", input).get("result") is True

    def _post(self, url: str, input: Mapping[str, Any]) -> dict[str, Any]:
        where = f"POST {url}"
        try:
            body = json.dumps({"input": dict(input)})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"policy input is not JSON: {exc}") from exc
        try:
            response = self._client.post(
                url, content=body, timeout=self._timeout,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise Unavailable(f"{where}: HTTP {response.status_code}: {response.text[:ERROR_BODY_CHARS]}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise Unavailable(f"{where}: the answer is not JSON: {exc}") from exc
        if not isinstance(answer, dict):
            raise Unavailable(f"{where}: the answer is not a JSON object")
        return answer

    def close(self) -> None:
        self._client.close()


# ------------------------------------------------------------------ choice


_engines: dict[tuple[str, str], PolicyEngine] = {}
_engines_lock = threading.Lock()


def engine_from_env(environ: Mapping[str, str] | None = None) -> PolicyEngine:
    """FINOPS_OPA_URL set -> OpaServer, else EmbeddedOpa on the resolved policy directory (one per dir/URL)."""
    env = os.environ if environ is None else environ
    url = env.get(OPA_URL_ENV, "").strip()
    key = ("server", url) if url else ("embedded", str(resolve_policy_dir(env).resolve()))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = OpaServer(url) if url else EmbeddedOpa(key[1])
            _engines[key] = engine
        return engine
