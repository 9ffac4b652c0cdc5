"""The Contract of an InferenceRun, byte for byte as krateoplatformops/kserve-controller writes it.

The controller (internal/controller/controller.go, internal/helpers/job/contract.go) marshals
`ContractSpec{jobId, jobName, kserve, input, output, parameters}` with Go's encoding/json into the
run's `status.contract` and the runner's /tmp/contract.json. `render` writes the same bytes:
- keys in the struct's order: jobId, jobName, kserve {modelName, modelUrl, modelVersion,
  modelInputName}, input, output, parameters. `omitempty` decides what is left out: jobId and each
  kserve field when empty (strings), input and output when they name no provider (maps), parameters
  only when the run has none (a `*map[string]string`: `parameters: {}` is written `"parameters":{}`);
  kserve is always there, `{}` at least;
- the provider objects (storage.input/output: provider label -> any JSON, e.g. `krateo` or a
  custom one) keep their content, re-encoded as the controller does: it reads the InferenceConfig as
  unstructured and converts it (structured-merge-diff FromUnstructured marshals each RawExtension
  with encoding/json), so object keys come out sorted bytewise at every level, a number that fits
  int64 is an integer and every other number a float64;
- Go's json.Marshal byte format: no whitespace; a float64 in its shortest digits, in exponent form
  below 1e-6 and from 1e21 (`1e-7`, `1e+21`), else plain (`100000000000000000000`, `0.000001`, `-0`);
  strings escaped with HTML escaping on: `\\"` `\\\\`, `\\b` `\\f` `\\n` `\\r` `\\t`, other control
  characters as `\\u00xx`, `<` `>` `&` as `\\u003c` `\\u003e` `\\u0026`, U+2028/U+2029 as
  `\\u2028`/`\\u2029`, everything else as UTF-8. A lone surrogate (JSON `"\\ud800"`) is U+FFFD, as
  Go's decoder makes it.

`parse` reads a contract back, as a runner reads /tmp/contract.json (unknown keys ignored, like Go's
json.Unmarshal); `render(parse(b)) == b` for every contract `render` wrote. `build` makes the Contract
from the InferenceRun and InferenceConfig JSON bodies (dicts, the provider objects untouched), and
`job_name` is ComputeJobName of internal/helpers/util.go: the Job, CronJob and ConfigMap name.
Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from functions.errors import FieldError, InvalidInput

JOB_NAME_PREFIX = "inf"
"""The controller's prefix of every job name (controller.go JOB_NAME_PREFIX)."""
MAX_NAME = 63
UID_CHARS = 8
MAX_DEPTH = 100
"""Nesting a provider object may have: deeper is refused (the API server's own objects never are)."""
_INT64 = (-(2**63), 2**63 - 1)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\"\\\\<>&\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class KServe:
    """The model to call (InferenceConfig spec.kserve): only modelUrl and modelInputName are used."""

    model_name: str = ""
    model_url: str = ""
    model_version: str = ""
    model_input_name: str = ""


@dataclass(frozen=True)
class Contract:
    """What one run does. `parameters` None: the run has none (left out); {}: present and empty."""

    job_id: str
    job_name: str
    kserve: KServe = field(default_factory=KServe)
    input: Mapping[str, Any] = field(default_factory=dict)
    output: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, str] | None = None


# ---- the job name ---------------------------------------------------------------------------------


def job_name(prefix: str, name: str, uid: str) -> str:
    """ComputeJobName: `<main>-<uid8>`, at most 63 characters, a valid Kubernetes name.

    uid8: the first 8 ASCII letters and digits of the UID, lower-cased (anything else skipped),
    right-padded with `0`. main: `<prefix>-<name>` lower-cased, every run of other bytes (non-ASCII
    included, byte by byte) one `-`, none leading or trailing, cut to 53 characters (63 - 8 - 2) and
    trimmed again. No main left: just uid8.
    """
    uid_part = bytearray()
    for byte in uid.encode("utf-8", "surrogatepass"):
        if len(uid_part) == UID_CHARS:
            break
        low = _lower(byte)
        if _alnum(low):
            uid_part.append(low)
    uid_part += b"0" * (UID_CHARS - len(uid_part))
    out = bytearray()
    for byte in f"{prefix}-{name}".encode("utf-8", "surrogatepass"):
        low = _lower(byte)
        if _alnum(low):
            out.append(low)
        elif out and out[-1:] != b"-":
            out.append(ord("-"))
    main = bytes(out).rstrip(b"-")[: MAX_NAME - UID_CHARS - 2].rstrip(b"-")
    uid8 = uid_part.decode("ascii")
    return f"{main.decode('ascii')}-{uid8}" if main else uid8


def _lower(byte: int) -> int:
    return byte + 32 if 65 <= byte <= 90 else byte


def _alnum(byte: int) -> bool:
    return 97 <= byte <= 122 or 48 <= byte <= 57


# ---- build ----------------------------------------------------------------------------------------


def build(run: Mapping[str, Any], config: Mapping[str, Any]) -> Contract:
    """The Contract of an InferenceRun with its InferenceConfig (both JSON bodies), as the controller's
    Observe builds it; InvalidInput names every field Go could not have converted (`run.…`/`config.…`)."""
    errors: list[FieldError] = []
    meta = _object(run.get("metadata"), "run.metadata", errors)
    spec = _object(run.get("spec"), "run.spec", errors)
    config_spec = _object(config.get("spec"), "config.spec", errors)
    raw_kserve = _object(config_spec.get("kserve"), "config.spec.kserve", errors)
    kserve = KServe(*(_string(raw_kserve.get(key), f"config.spec.kserve.{key}", errors)
                      for key in ("modelName", "modelUrl", "modelVersion", "modelInputName")))
    storage = _object(config_spec.get("storage"), "config.spec.storage", errors)
    inputs = _providers(storage.get("input"), "config.spec.storage.input", errors)
    outputs = _providers(storage.get("output"), "config.spec.storage.output", errors)
    raw_params = spec.get("parameters")
    parameters = None if raw_params is None else _strings(raw_params, "run.spec.parameters", errors)
    uid = _string(meta.get("uid"), "run.metadata.uid", errors)
    name = _string(meta.get("name"), "run.metadata.name", errors)
    if errors:
        raise InvalidInput("the Contract cannot be built: " + "; ".join(f"{e.loc} {e.msg}" for e in errors[:5]), errors)
    return Contract(uid, job_name(JOB_NAME_PREFIX, name, uid), kserve, inputs, outputs, parameters)


def _object(value: Any, loc: str, errors: list[FieldError]) -> Mapping[str, Any]:
    """A JSON object; null or absent is empty (Go's zero value)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    errors.append(FieldError(loc, f"must be an object, got {_type(value)}"))
    return {}


def _string(value: Any, loc: str, errors: list[FieldError]) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _valid_text(value)
    errors.append(FieldError(loc, f"must be a string, got {_type(value)}"))
    return ""


def _strings(value: Any, loc: str, errors: list[FieldError]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        errors.append(FieldError(loc, f"must be an object of strings, got {_type(value)}"))
        return {}
    return {_valid_text(str(k)): _string(v, f"{loc}.{k}", errors) for k, v in value.items()}


def _providers(value: Any, loc: str, errors: list[FieldError]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, provider in _object(value, loc, errors).items():
        problem = _json_problem(provider, 0)
        if problem:
            errors.append(FieldError(f"{loc}.{label}", problem))
        out[_valid_text(str(label))] = provider
    return out


def _json_problem(value: Any, depth: int) -> str | None:
    """Why Go's encoder could not write this value (a non-finite or too large number, not JSON)."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int | float):
        try:
            _number(value)
        except ValueError as exc:
            return str(exc)
        return None
    if isinstance(value, Mapping):
        items = list(value.values())
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return f"not JSON: {_type(value)}"
    return next((p for p in (_json_problem(v, depth + 1) for v in items) if p), None)


def _type(value: Any) -> str:
    return {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


# ---- render / parse -------------------------------------------------------------------------------


def render(contract: Contract) -> bytes:
    """The contract as encoding/json writes ContractSpec (module doc)."""
    parts: list[str] = []
    if contract.job_id:
        parts.append('"jobId":' + go_json(contract.job_id))
    if contract.job_name:
        parts.append('"jobName":' + go_json(contract.job_name))
    k = contract.kserve
    kserve = [f'"{key}":{go_json(value)}' for key, value in (
        ("modelName", k.model_name), ("modelUrl", k.model_url), ("modelVersion", k.model_version),
        ("modelInputName", k.model_input_name)) if value]
    parts.append('"kserve":{' + ",".join(kserve) + "}")
    for key, providers in (("input", contract.input), ("output", contract.output)):
        if providers:
            parts.append(f'"{key}":' + go_json(providers))
    if contract.parameters is not None:
        parts.append('"parameters":' + go_json(contract.parameters))
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def parse(data: bytes | str) -> Contract:
    """A contract as a runner reads it; InvalidInput (naming the fields) when it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("the contract is not JSON", [FieldError("contract", str(exc))]) from exc
    if not isinstance(doc, dict):
        raise InvalidInput("the contract is not a JSON object", [FieldError("contract", f"got {_type(doc)}")])
    errors: list[FieldError] = []
    raw_kserve = _object(doc.get("kserve"), "kserve", errors)
    kserve = KServe(*(_string(raw_kserve.get(key), f"kserve.{key}", errors)
                      for key in ("modelName", "modelUrl", "modelVersion", "modelInputName")))
    contract = Contract(
        _string(doc.get("jobId"), "jobId", errors), _string(doc.get("jobName"), "jobName", errors), kserve,
        _providers(doc.get("input"), "input", errors), _providers(doc.get("output"), "output", errors),
        None if doc.get("parameters") is None else _strings(doc["parameters"], "parameters", errors))
    if errors:
        raise InvalidInput("the contract is invalid: " + "; ".join(f"{e.loc} {e.msg}" for e in errors[:5]), errors)
    return contract


def go_json(value: Any) -> str:
    """One JSON value as Go's json.Marshal writes the unstructured value (module doc); ValueError
    for what it refuses (NaN, infinities, numbers beyond float64, non-JSON types)."""
    out: list[str] = []
    _encode(value, out, 0)
    return "".join(out)


def _encode(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int | float):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, Mapping):
        members = {_valid_text(str(k)): v for k, v in value.items()}  # Go's map: a later equal key wins
        out.append("{")
        for i, key in enumerate(sorted(members, key=lambda k: k.encode("utf-8"))):
            out.append(("," if i else "") + _go_string(key) + ":")
            _encode(members[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise ValueError(f"not JSON: {_type(value)}")


def _number(value: int | float) -> str:
    """An int64 as an integer; anything else as the float64 Go decodes it to (json.Number.Float64)."""
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return str(value)
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"number out of range: {str(value)[:40]}") from None
    if not math.isfinite(number):
        raise ValueError(f"unsupported number: {value!r}")
    return go_float(number)


def go_float(number: float) -> str:
    """strconv.AppendFloat(f, 'f' or 'e', -1, 64) as encoding/json picks and tidies it."""
    if number == 0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    sign = "-" if number < 0 else ""
    digits, point = _shortest(abs(number))  # value = 0.<digits> x 10^point
    if abs(number) < 1e-6 or abs(number) >= 1e21:
        exp = point - 1
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):0{1 if exp < 0 else 2}d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _shortest(number: float) -> tuple[str, int]:
    """The shortest digits that read back as `number` (Python's repr, like Go's -1 precision)."""
    mantissa, _, exponent = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    return stripped.rstrip("0"), point - (len(digits) - len(stripped))


def _go_string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, _valid_text(text)) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _valid_text(text: str) -> str:
    """A lone surrogate becomes U+FFFD, as Go's JSON decoder turns it."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text
