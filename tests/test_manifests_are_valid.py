"""Every manifest is validated offline against real schemas, and the wiring between them holds.

Validators (each shown to fail on a deliberately broken manifest):
- core kinds (Namespace, ServiceAccount, ClusterRole/Binding, Deployment, Secret, CRDs): kubernetes-validate, strict;
- Knative kinds (Service, Broker, Trigger, PingSource, SinkBinding): the cloudcoil models (types) plus a
  strict walk over the same models (unknown fields) and the fields Knative requires;
- our CRs (crds/examples): the generated CRD's openAPIV3Schema (jsonschema) plus a check for fields the
  API server would silently prune, and the pydantic models;
- KafkaSource: a strict model of the fields we use, written from the Knative documentation;
- cert-manager kinds (Issuer, Certificate: the optimizer webhook's serving certificate): the cloudcoil
  cert-manager models plus the same strict walk and required fields.
Cases: every file of knative/, eventsources/ (incl. kafka/), crds/ and crds/examples; every rendered
kustomization (when `kubectl` exists); every knative/*.yaml listed in its kustomization; Triggers route
to existing Services whose FUNCTION_TARGET is a target of functions.main; every event type of
functions.events.CATALOGUE is consumed by a Trigger or documented as terminal; RBAC covers every kind the
bridge watches and never lists Secrets; every function Service has resources, probes, a restricted
securityContext and scales to zero; every Knative Service sets containerConcurrency, equal to
functions-framework's THREADS (one worker), and the database handler's leaves threads beyond its
notebook runs and has listener slots beyond its threads; the optimizer's
MutatingWebhookConfiguration (CREATE and UPDATE, failurePolicy Ignore, a timeout above the optimizer's
own budget) reaches a TLS Service whose Deployment runs the optimizer target with the certificate
cert-manager injects.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from functions import bridge, events
from functions.main import TARGETS
from functions.models.registry import all_kinds

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32"
KUSTOMIZATIONS = ["knative/base", "eventsources", "eventsources/kafka", "knative/overlays/local"]

with warnings.catch_warnings():  # cloudcoil's generated models shadow attributes (UserWarning at import)
    warnings.simplefilter("ignore")
    from cloudcoil.models.cert_manager import v1 as cert_manager_v1
    from cloudcoil.models.knative_eventing.eventing import v1 as eventing_v1
    from cloudcoil.models.knative_eventing.sources import v1 as sources_v1
    from cloudcoil.models.knative_serving.serving import v1 as serving_v1

KNATIVE: dict[tuple[str, str], type[BaseModel]] = {
    ("serving.knative.dev/v1", "Service"): serving_v1.Service,
    ("eventing.knative.dev/v1", "Broker"): eventing_v1.Broker,
    ("eventing.knative.dev/v1", "Trigger"): eventing_v1.Trigger,
    ("sources.knative.dev/v1", "PingSource"): sources_v1.PingSource,
    ("sources.knative.dev/v1", "SinkBinding"): sources_v1.SinkBinding,
}
CERT_MANAGER: dict[tuple[str, str], type[BaseModel]] = {  # the optimizer webhook's serving certificate
    ("cert-manager.io/v1", "Issuer"): cert_manager_v1.Issuer,
    ("cert-manager.io/v1", "Certificate"): cert_manager_v1.Certificate,
}
REQUIRED: dict[str, list[str]] = {  # from the Knative and cert-manager API references
    "Service": ["metadata.name", "spec.template.spec.containers"],
    "Broker": ["metadata.name"],
    "Trigger": ["metadata.name", "spec.broker", "spec.subscriber"],
    "PingSource": ["metadata.name", "spec.sink"],
    "SinkBinding": ["metadata.name", "spec.subject", "spec.sink"],
    "Issuer": ["metadata.name"],
    "Certificate": ["metadata.name", "spec.secretName", "spec.issuerRef.name"],
}
DESTINATIONS = ("sink", "subscriber", "deadLetterSink")


# ---- KafkaSource: strict model of the fields we use (knative.dev/docs/eventing/sources/kafka-source) ----


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KReference(_Strict):
    apiVersion: str  # noqa: N815 - the wire names
    kind: str
    name: str
    namespace: str | None = None


class Destination(_Strict):
    ref: KReference | None = None
    uri: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Destination:
        if self.ref is None and not self.uri:
            raise ValueError("a sink needs ref or uri")
        return self


class KafkaSourceSpec(_Strict):
    bootstrapServers: list[str] = Field(min_length=1)  # noqa: N815
    topics: list[str] = Field(min_length=1)
    consumerGroup: str | None = None  # noqa: N815
    initialOffset: Literal["earliest", "latest"] | None = None  # noqa: N815
    consumers: int | None = Field(default=None, ge=1)
    sink: Destination


class KafkaSourceMeta(_Strict):
    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class KafkaSource(_Strict):
    apiVersion: Literal["sources.knative.dev/v1beta1"]  # noqa: N815
    kind: Literal["KafkaSource"]
    metadata: KafkaSourceMeta
    spec: KafkaSourceSpec


# ---- validators -------------------------------------------------------------------------------------


def _crd_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        out[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


CRD_SCHEMAS = _crd_schemas()


def validate(doc: dict[str, Any]) -> list[str]:
    """Every problem of one manifest ([] when valid), whatever its kind."""
    api, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    if (api, kind) in KNATIVE:
        return validate_knative(doc)
    if (api, kind) in CERT_MANAGER:
        return _validate_with_model(CERT_MANAGER[(api, kind)], doc)
    if kind == "KafkaSource":
        return _pydantic_errors(KafkaSource, doc)
    if api.split("/")[0] in bridge.GROUPS:
        return validate_cr(doc)
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{api} {kind}: no schema to validate against"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"]
    return []


def _validate_with_model(model: type[BaseModel], doc: dict[str, Any]) -> list[str]:
    """cloudcoil's lenient model (types), a strict walk (unknown fields) and the required fields."""
    errors = _pydantic_errors(model, doc)
    errors += strict_keys(model, doc, "")
    for path in REQUIRED[doc["kind"]]:
        if _get(doc, path) in (None, "", [], {}):
            errors.append(f"{path}: required")
    return errors


def validate_knative(doc: dict[str, Any]) -> list[str]:
    errors = _validate_with_model(KNATIVE[(doc["apiVersion"], doc["kind"])], doc)
    for path, node in _nodes(doc):
        if path.rsplit(".", 1)[-1] in DESTINATIONS and isinstance(node, dict):
            if not node.get("ref") and not node.get("uri"):
                errors.append(f"{path}: needs ref or uri")
            ref = node.get("ref") or {}
            errors += [f"{path}.ref.{k}: required" for k in ("apiVersion", "kind", "name") if ref and not ref.get(k)]
        if path.endswith("containers") and isinstance(node, list):
            errors += [f"{path}[{i}].image: required" for i, c in enumerate(node) if not c.get("image")]
    return errors


def strict_keys(model: type[BaseModel], data: Any, path: str) -> list[str]:
    """Keys the (lenient) model does not know, at any depth."""
    if not isinstance(data, dict):
        return []
    fields = {(f.alias or name): f.annotation for name, f in model.model_fields.items()}
    errors = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            errors.append(f"{where}: unknown field")
        else:
            errors += _strict_value(fields[key], value, where)
    return errors


def _strict_value(annotation: Any, value: Any, path: str) -> list[str]:
    origin = get_origin(annotation)
    if origin is Union or str(origin) in ("typing.Union", "<class 'types.UnionType'>"):
        for arg in get_args(annotation):
            if arg is not type(None):
                return _strict_value(arg, value, path)
        return []
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated
        return _strict_value(get_args(annotation)[0], value, path)
    if origin in (list, tuple) and isinstance(value, list):
        (item,) = get_args(annotation)[:1]
        return [e for i, v in enumerate(value) for e in _strict_value(item, v, f"{path}[{i}]")]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return strict_keys(annotation, value, path)
    return []


def validate_cr(doc: dict[str, Any]) -> list[str]:
    schema = CRD_SCHEMAS.get(str(doc.get("kind")))
    if schema is None:
        return [f"kind {doc.get('kind')!r}: no generated CRD in crds/"]
    errors = [f"{'.'.join(str(p) for p in e.path)}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    errors += [f"{p}: unknown field (the API server would prune it)" for p in pruned(schema, doc, "")]
    info = all_kinds()[doc["kind"]]
    errors += _pydantic_errors(info.model, doc)
    return errors


def pruned(schema: dict[str, Any], data: Any, path: str) -> Iterator[str]:
    """Paths a structural schema does not declare (a typo in a CR vanishes silently otherwise)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(data, dict) and "properties" in schema:
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            if key not in schema["properties"]:
                if path or key not in ("apiVersion", "kind", "metadata"):
                    yield where
            else:
                yield from pruned(schema["properties"][key], value, where)
    elif isinstance(data, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in data.items():
            yield from pruned(schema["additionalProperties"], value, f"{path}.{key}")
    elif isinstance(data, list) and "items" in schema:
        for i, item in enumerate(data):
            yield from pruned(schema["items"], item, f"{path}[{i}]")


def _pydantic_errors(model: type[BaseModel], doc: dict[str, Any]) -> list[str]:
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    except TypeError as exc:  # cloudcoil's int-or-string quantities raise this for a bare number
        return [f"{model.__name__}: {exc}"]
    return []


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _nodes(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _nodes(v, f"{path}[{i}]")


# ---- the manifests ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    files = [*sorted((ROOT / "knative" / "base").glob("*.yaml")), *sorted((ROOT / "eventsources").rglob("*.yaml")),
             *sorted((ROOT / "crds").glob("*.yaml")), *sorted((ROOT / "crds" / "examples").glob("*.yaml"))]
    return [f for f in files if f.name != "kustomization.yaml"]


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]


def all_docs(folder: str) -> list[dict[str, Any]]:
    return [d for f in sorted((ROOT / folder).glob("*.yaml")) if f.name != "kustomization.yaml" for d in docs_of(f)]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_manifest_file_is_valid(path: Path) -> None:
    problems = {f"{d.get('kind')}/{d.get('metadata', {}).get('name')}": validate(d) for d in docs_of(path)}
    assert problems, f"{path} holds no manifest"
    assert not {k: v for k, v in problems.items() if v}, problems


@pytest.mark.parametrize("folder", KUSTOMIZATIONS)
def test_every_kustomization_renders_valid_manifests(folder: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (no Debian package ships it): rendering with `kubectl kustomize` "
                    "is checked where it exists; the files themselves are validated above")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / folder)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    problems = {f"{d['kind']}/{d['metadata']['name']}": validate(d) for d in docs}
    assert not {k: v for k, v in problems.items() if v}, problems
    if folder == "knative/overlays/local":
        db = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "dbhandler")
        env = {e["name"]: e.get("value") for e in db["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["FINOPS_DB_MODE"] == "embedded"
    if folder == "knative/base":  # the kustomization gives every Knative Service a bound ServiceAccount
        accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
        for d in docs:
            if d["kind"] == "Service" and d["apiVersion"] == "serving.knative.dev/v1":
                assert d["spec"]["template"]["spec"].get("serviceAccountName") in accounts, d["metadata"]["name"]


def test_every_knative_file_is_in_the_kustomization() -> None:
    listed = set(yaml.safe_load((ROOT / "knative" / "base" / "kustomization.yaml").read_text(encoding="utf-8"))["resources"])
    files = {f.name for f in (ROOT / "knative" / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert files - listed == set(), "add these files to knative/base/kustomization.yaml"


# ---- wiring -----------------------------------------------------------------------------------------


def _services() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in all_docs("knative/base")
            if d.get("kind") == "Service" and d["apiVersion"].startswith("serving.knative.dev/")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    containers = service["spec"]["template"]["spec"]["containers"]
    return {e["name"]: str(e.get("value", "")) for c in containers for e in c.get("env", [])}


TRIGGERS = [d for d in all_docs("knative/base") if d.get("kind") == "Trigger"]


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: t["metadata"]["name"])
def test_every_trigger_routes_to_an_existing_function(trigger: dict[str, Any]) -> None:
    services = _services()
    ref = trigger["spec"]["subscriber"]["ref"]
    assert ref["kind"] == "Service" and ref["name"] in services, f"no Service {ref['name']}"
    assert _env(services[ref["name"]]).get("FUNCTION_TARGET") in TARGETS
    dead = trigger["spec"]["delivery"]["deadLetterSink"]["ref"]["name"]
    assert dead in services
    assert trigger["spec"]["delivery"]["retry"] >= 1
    assert trigger["spec"]["filter"]["attributes"]["type"] in events.CATALOGUE


@pytest.mark.parametrize("event_type", sorted(events.CATALOGUE))
def test_every_event_type_is_consumed_or_terminal(event_type: str) -> None:
    consumed = {t["spec"]["filter"]["attributes"].get("type") for t in TRIGGERS}
    assert event_type in consumed or "terminal" in events.CATALOGUE[event_type].lower(), (
        f"{event_type}: no Trigger consumes it and CATALOGUE does not call it terminal")


def test_sinkbindings_name_existing_subjects() -> None:
    subjects = {(d["kind"], d["metadata"]["name"]) for d in all_docs("knative/base")}
    for binding in [d for d in all_docs("knative/base") + all_docs("eventsources") if d["kind"] == "SinkBinding"]:
        subject = binding["spec"]["subject"]
        assert (subject["kind"], subject["name"]) in subjects
        assert binding["spec"]["sink"]["ref"] == {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                                                  "name": "default"}


def _rules(role: str) -> list[dict[str, Any]]:
    return next(d for d in all_docs("knative/base") if d["kind"] == "ClusterRole" and d["metadata"]["name"] == role)["rules"]


def _allowed(role: str, group: str, resource: str) -> set[str]:
    return {v for r in _rules(role) if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


def test_rbac_is_least_privilege_and_covers_every_watched_kind() -> None:
    for info in bridge.watched_kinds():
        assert {"get", "list", "watch", "patch"} <= _allowed("finops-bridge", info.group, info.plural), info.kind
        assert {"get", "list"} <= _allowed("finops-functions", info.group, info.plural), info.kind
        assert "delete" not in _allowed("finops-bridge", info.group, info.plural)
    assert _allowed("finops-bridge", "sources.knative.dev", "pingsources") >= {"create", "patch", "delete"}
    for plural in ("exporterscraperconfigs", "scraperconfigs"):  # the functions write their cycle's outcome
        assert _allowed("finops-functions", "finops.krateo.io", f"{plural}/status") == {"patch"}
        assert "patch" not in _allowed("finops-functions", "finops.krateo.io", plural)
    for role in ("finops-bridge", "finops-functions"):
        assert _allowed(role, "", "secrets") == {"get"}, "Secrets: get only, never list or watch"
        assert not any("*" in r["verbs"] or "*" in r["resources"] for r in _rules(role))


@pytest.mark.parametrize("name", sorted(n for n, d in _services().items() if "FUNCTION_TARGET" in _env(d)))
def test_every_function_service_has_resources_probes_and_scales_to_zero(name: str) -> None:
    svc = _services()[name]
    template = svc["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
    container = template["spec"]["containers"][0]
    assert {"requests", "limits"} <= container["resources"].keys()
    if "FUNCTION_TARGET" in _env(svc):
        assert container["readinessProbe"]["httpGet"]["path"] == "/"
        assert container["securityContext"]["runAsNonRoot"] is True


def _kinds(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_docs("knative/base") if d["kind"] == kind]


def test_the_optimizer_webhook_is_fail_open_and_reaches_the_optimizer_target() -> None:
    (config,) = _kinds("MutatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert {op for r in hook["rules"] for op in r["operations"]} == {"CREATE", "UPDATE"}
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    target = hook["clientConfig"]["service"]
    (svc,) = [d for d in _kinds("Service") if d["apiVersion"] == "v1" and d["metadata"]["name"] == target["name"]]
    assert target["namespace"] == "finops" and target["port"] in [p["port"] for p in svc["spec"]["ports"]]
    (dep,) = [d for d in _kinds("Deployment")
              if d["spec"]["template"]["metadata"]["labels"].items() >= svc["spec"]["selector"].items()]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FUNCTION_TARGET"] == "optimizer" and "optimizer" in TARGETS
    assert f"target='{env['FUNCTION_TARGET']}'" in container["command"][-1]
    assert 0 < float(env["FINOPS_OPTIMIZER_BUDGET_S"]) < hook["timeoutSeconds"] <= 10, "answer inside the timeout"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "finops-optimizer-webhook"
    # TLS: cert-manager's CA injector fills caBundle from the Certificate the Deployment mounts
    ns, _, cert_name = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].partition("/")
    (cert,) = [d for d in _kinds("Certificate") if d["metadata"]["name"] == cert_name]
    assert ns == "finops" and f"{target['name']}.finops.svc" in cert["spec"]["dnsNames"]
    mounted = {v["secret"]["secretName"] for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert cert["spec"]["secretName"] in mounted
    issuers = {d["metadata"]["name"] for d in _kinds("Issuer")}
    assert cert["spec"]["issuerRef"]["name"] in issuers


def test_the_optimizer_webhook_only_reads_and_only_the_ping_labels() -> None:
    assert _allowed("finops-optimizer-webhook", "", "secrets") == {"get"}
    assert _allowed("finops-optimizer-webhook", "compute.azure.com", "virtualmachines") == {"get"}
    assert not _allowed("finops-optimizer-webhook", "composition.krateo.io", "*")
    assert _allowed("finops-optimizer", "composition.krateo.io", "*") == {"list", "patch"}
    assert not _allowed("finops-optimizer", "", "secrets")
    for role in ("finops-optimizer", "finops-optimizer-webhook"):
        assert not any("*" in r["verbs"] or "*" in r["apiGroups"] for r in _rules(role))
    service = _services()["optimizer"]
    assert _env(service)["FINOPS_OPTIMIZER_ADMISSION"] == "false", "admissions only over TLS, at the Deployment"


def test_every_function_service_is_cluster_local() -> None:
    for name, svc in _services().items():
        assert svc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local", name


@pytest.mark.parametrize("name", sorted(_services()))
def test_every_service_bounds_its_concurrency_and_matches_its_worker_threads(name: str) -> None:
    """Knative queues requests beyond containerConcurrency; functions-framework serves WORKERS x THREADS
    at once. Equal, nothing waits inside the pod where the autoscaler cannot see it (0 = unbounded)."""
    svc = _services()[name]
    concurrency = svc["spec"]["template"]["spec"].get("containerConcurrency")
    assert isinstance(concurrency, int) and concurrency > 0, f"{name}: set containerConcurrency"
    env = _env(svc)
    if "FUNCTION_TARGET" in env:
        assert env.get("WORKERS", "1") == "1", f"{name}: one worker process (the embedded engine needs it)"
        assert int(env["THREADS"]) == concurrency, f"{name}: THREADS {env.get('THREADS')} != containerConcurrency {concurrency}"


def test_the_database_handler_has_threads_beyond_its_notebooks_and_listener_slots_beyond_its_threads() -> None:
    from functions.settings.database import DbHandlerSettings
    from functions.settings.notebooks import NotebookRunSettings

    threads = int(_env(_services()["dbhandler"])["THREADS"])
    running = NotebookRunSettings.model_fields["max_running"].default
    assert threads >= 2 * running + 4, "notebook runs (and those waiting for a slot) must leave threads for uploads"
    assert DbHandlerSettings().sql_connections >= 2 * threads, "each request may hold two listener connections"


# ---- each validator fails on a broken manifest ------------------------------------------------------


def _doc(file: str, kind: str, name: str | None = None) -> dict[str, Any]:
    path = ROOT / file
    return copy.deepcopy(next(d for d in docs_of(path) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)))


def _broken() -> Iterator[Any]:
    dep = _doc("knative/base/40-bridge.yaml", "Deployment")
    dep["spec"]["replicas"] = "one"
    yield pytest.param(dep, "spec.replicas", id="core-type")
    role = _doc("knative/base/05-rbac.yaml", "ClusterRole", "finops-bridge")
    role["rules"][0]["verb"] = ["get"]
    yield pytest.param(role, "verb", id="core-unknown-field")
    crd = _doc("crds/finops.krateo.io_scraperconfigs.yaml", "CustomResourceDefinition")
    crd["spec"]["versions"] = "v1"
    yield pytest.param(crd, "spec.versions", id="crd-itself")
    trig = _doc("knative/base/30-triggers.yaml", "Trigger", "exporter-ping")
    trig["spec"]["subscriber"]["ref"]["nmae"] = trig["spec"]["subscriber"]["ref"].pop("name")
    yield pytest.param(trig, "spec.subscriber.ref.nmae", id="knative-unknown-field")
    trig = _doc("knative/base/30-triggers.yaml", "Trigger", "exporter-ping")
    del trig["spec"]["broker"]
    yield pytest.param(trig, "spec.broker", id="knative-required-field")
    svc = _doc("knative/base/20-services.yaml", "Service", "exporter")
    svc["spec"]["template"]["spec"]["timeoutSeconds"] = "ten minutes"
    yield pytest.param(svc, "timeoutSeconds", id="knative-type")
    svc = _doc("knative/base/20-services.yaml", "Service", "scraper")
    del svc["spec"]["template"]["spec"]["containers"][0]["image"]
    yield pytest.param(svc, "image", id="knative-container-without-image")
    binding = _doc("eventsources/10-bridge-sinkbinding.yaml", "SinkBinding")
    binding["spec"]["sink"] = {}
    yield pytest.param(binding, "spec.sink", id="knative-empty-sink")
    cr = _doc("crds/examples/scraperconfig.yaml", "ScraperConfig")
    cr["spec"]["pollingInterval"] = 5
    yield pytest.param(cr, "pollingInterval", id="cr-type")
    cr = _doc("crds/examples/scraperconfig.yaml", "ScraperConfig")
    cr["spec"]["tableNmae"] = "x"
    yield pytest.param(cr, "spec.tableNmae", id="cr-pruned-field")
    kafka = _doc("eventsources/kafka/kafkasource.yaml", "KafkaSource")
    del kafka["spec"]["topics"]
    yield pytest.param(kafka, "topics", id="kafka-missing-topics")
    kafka = _doc("eventsources/kafka/kafkasource.yaml", "KafkaSource")
    kafka["spec"]["topic"] = "ai-costs"
    yield pytest.param(kafka, "topic", id="kafka-unknown-field")
    kafka = _doc("eventsources/kafka/kafkasource.yaml", "KafkaSource")
    kafka["spec"]["initialOffset"] = "oldest"
    yield pytest.param(kafka, "initialOffset", id="kafka-bad-offset")
    hook = _doc("knative/base/50-optimizer-webhook.yaml", "MutatingWebhookConfiguration")
    hook["webhooks"][0]["timeout"] = hook["webhooks"][0].pop("timeoutSeconds")
    yield pytest.param(hook, "timeout", id="webhook-unknown-field")
    hook = _doc("knative/base/50-optimizer-webhook.yaml", "MutatingWebhookConfiguration")
    hook["webhooks"][0]["timeoutSeconds"] = "5s"
    yield pytest.param(hook, "timeoutSeconds", id="webhook-type")
    cert = _doc("knative/base/50-optimizer-webhook.yaml", "Certificate")
    cert["spec"]["dnsName"] = cert["spec"].pop("dnsNames")
    yield pytest.param(cert, "spec.dnsName", id="cert-manager-unknown-field")
    cert = _doc("knative/base/50-optimizer-webhook.yaml", "Certificate")
    del cert["spec"]["secretName"]
    yield pytest.param(cert, "secretName", id="cert-manager-required-field")


@pytest.mark.parametrize(("doc", "where"), list(_broken()))
def test_a_broken_manifest_fails_validation(doc: dict[str, Any], where: str) -> None:
    problems = validate(doc)
    assert problems, "a broken manifest passed"
    assert any(where in p for p in problems), problems
