"""Kubernetes' name rules (DNS-1123), pure: what a namespace, an object name and a kind may be.

The API server enforces these for every object it stores; the local CR store, the bridge and every
function that reads a name from an event or a URL enforce them too, because those names become
file names (the local store, snapshots), notebook names and labels. A name that passes cannot
climb out of a directory: no '/', no leading '.', no '..', at most 253 characters.

- namespace: an RFC 1123 label (lowercase alphanumerics and '-', starting and ending alphanumeric,
  at most 63), as Kubernetes requires of namespaces;
- object name: an RFC 1123 subdomain (dot-separated labels, at most 253), as Kubernetes requires of
  custom resources and Secrets. No kind of ours puts its name where only a label fits: PingSource
  names derived from it are shortened with a hash (functions.models.pingsources) and the owner-name
  label is set only when the name fits in 63 characters;
- kind: a CamelCase identifier (letters and digits, starting with a letter, at most 63).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
KIND_MAX = 63

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
LABEL_PATTERN = rf"^{_LABEL}$"
SUBDOMAIN_PATTERN = rf"^{_LABEL}(\.{_LABEL})*$"
KIND_PATTERN = r"^[A-Za-z][A-Za-z0-9]*$"
_SCAN_MAX = 1024
"""Longer values are refused by length alone (the message stays short, the regex work bounded)."""
# fullmatch, not match: `$` also matches before a final newline ("a\n" is not a name)
_LABEL_RX = re.compile(LABEL_PATTERN)
_SUBDOMAIN_RX = re.compile(SUBDOMAIN_PATTERN)
_KIND_RX = re.compile(KIND_PATTERN)


def cut(value: str, limit: int = 63) -> str:
    """Text for a message: long values cut, their length said (a 300-character name must not fill a
    log line or an answer)."""
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"


def shown(value: str, limit: int = 40) -> str:
    """The value quoted for a message, cut like `cut`."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"


def label_problem(value: object) -> str | None:
    """Why `value` is not an RFC 1123 label (a namespace), or None when it is one."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) <= _SCAN_MAX and not _LABEL_RX.fullmatch(value):
        return ("must be a lowercase RFC 1123 label: lowercase letters, digits and '-', starting and ending "
                f"with a letter or digit (e.g. 'finops'), got {shown(value)}")
    if len(value) > LABEL_MAX:
        return f"must be at most {LABEL_MAX} characters, got {len(value)}"
    return None


def subdomain_problem(value: object) -> str | None:
    """Why `value` is not an RFC 1123 subdomain (an object name), or None when it is one."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) <= _SCAN_MAX and not _SUBDOMAIN_RX.fullmatch(value):
        return ("must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', each "
                f"dot-separated part starting and ending with a letter or digit (e.g. 'my-config'), got {shown(value)}")
    if len(value) > SUBDOMAIN_MAX:
        return f"must be at most {SUBDOMAIN_MAX} characters, got {len(value)}"
    return None


def kind_problem(value: object) -> str | None:
    """Why `value` is not a kind name (CamelCase letters and digits), or None when it is one."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) <= _SCAN_MAX and not _KIND_RX.fullmatch(value):
        return f"must be letters and digits starting with a letter (e.g. 'ScraperConfig'), got {shown(value)}"
    if len(value) > KIND_MAX:
        return f"must be at most {KIND_MAX} characters, got {len(value)}"
    return None


def dns_label(value: str) -> str:
    """pydantic validator: a namespace (ValueError names the rule)."""
    problem = label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def dns_subdomain(value: str) -> str:
    """pydantic validator: an object name (ValueError names the rule)."""
    problem = subdomain_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Namespace = Annotated[str, AfterValidator(dns_label),
                      WithJsonSchema({"type": "string", "maxLength": LABEL_MAX, "pattern": LABEL_PATTERN})]
"""A Kubernetes namespace, checked by the model (the schema carries the same rule)."""

ObjectName = Annotated[str, AfterValidator(dns_subdomain),
                       WithJsonSchema({"type": "string", "maxLength": SUBDOMAIN_MAX, "pattern": SUBDOMAIN_PATTERN})]
"""A Kubernetes object name (custom resource, Secret), checked by the model."""
