"""No plaintext credentials: in pod specs and ConfigMaps, and in every other resource's inputs."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any, Iterator
from urllib.parse import urlsplit

from pulumi_policy import ReportViolation, ResourceValidationArgs, Secret

from resource_access import (
    CONFIG_MAP,
    POD_SPEC_PATHS,
    _containers,
    get,
    _is_list,
    items,
    mapping,
    plain,
    pod_spec,
    _schema,
    settings,
)

# --------------------------------------------------------------------------- secrets

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
#: ``Authorization: Bearer <value>`` (and API-key headers) inside a command, in shell or in
#: code (``{'Authorization': 'Bearer ' + key}``); the value is what follows, up to a quote,
#: a ``$``/``{`` expansion or a space, so only a credential written out is captured.
_HEADER_IN_COMMAND = re.compile(
    r"(?i)\b(?:proxy-)?(?:authorization|x-api-key|api-key)[\"']?\s*:\s*[\"']?(?:(?:bearer|basic)\s+)?"
    r"([A-Za-z0-9._~/=-][A-Za-z0-9._~+/=-]*)?")

NAME_PROPERTIES = {
    "secretNameWords": {"type": "array", "items": {"type": "string"},
                        "default": ["token", "password", "passwd", "secret", "credential", "credentials", "apikey"],
                        "description": "A name whose last word is one of these holds a credential (HF_TOKEN, "
                                       "adminPassword); *_FILE, *_PATH, *_NAME... do not end in one."},
    "keyQualifiers": {"type": "array", "items": {"type": "string"},
                      "default": ["api", "secret", "access", "private", "auth", "client", "signing", "master"],
                      "description": "A name ending in KEY holds a credential when the word before is one of these "
                                     "(VLLM_API_KEY, privateKey; not a taint's or selector's key)."},
}


def secret_name(name: Any, cfg: Mapping) -> bool:
    """Whether a variable, key or header name says it holds a credential."""
    words = [w.lower() for w in _WORD.findall(str(plain(name)))]
    # Helm's existingSecret / public keys name things that are not secret themselves.
    if not words or words[0] == "existing" or "public" in words:
        return False
    last = words[-1]
    return last in cfg["secretNameWords"] or (last == "key" and len(words) > 1 and words[-2] in cfg["keyQualifiers"])


def literal(value: Any) -> bool:
    """Whether ``value`` is a credential written out (not empty, a ``$VAR``/``$(VAR)``
    expansion, a file path or a boolean)."""
    value = plain(value)
    if not isinstance(value, str):
        return False
    value = value.strip()
    return bool(value) and not value.startswith(("$", "/")) and value.lower() not in ("true", "false")


def url_credential(value: Any) -> bool:
    """Whether ``value`` is a URL with a password written into it
    (``redis://:pass@host``, ``https://user:pass@host``); a ``$(VAR)`` expansion is not."""
    value = plain(value)
    if not isinstance(value, str) or "://" not in value or "@" not in value:
        return False
    try:
        password = urlsplit(value.strip()).password
    except ValueError:
        return False
    return bool(password) and literal(password)


def _argv(values: list) -> list[str]:
    """Command-line words; a string with spaces (``sh -c "..."``) is split like a shell would."""
    out = []
    for v in values:
        text = str(plain(v))
        try:
            out += shlex.split(text) if any(ch.isspace() for ch in text) else [text]
        except ValueError:
            out += text.split()
    return out


K8S_SECRETS_SCHEMA = _schema(
    **NAME_PROPERTIES,
    argFlags={"type": "array", "items": {"type": "string"}, "default": ["--api-key", "--token", "--hf-token", "--password"],
              "description": "Command-line flags whose value is a credential."},
    authHeaders={"type": "array", "items": {"type": "string"},
                 "default": ["authorization", "proxy-authorization", "x-api-key", "api-key"],
                 "description": "HTTP headers (probes, lifecycle hooks) whose value is a credential."},
)


def _handlers(container: Mapping) -> Iterator[tuple[str, Mapping]]:
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        yield kind, mapping(get(container, kind))
    for hook in ("postStart", "preStop"):
        yield f"lifecycle.{hook}", mapping(get(container, "lifecycle", hook))


def _container_secrets(c: Mapping, cfg: Mapping) -> Iterator[str]:
    for env in items(get(c, "env")):
        name = get(env, "name")
        if url_credential(get(env, "value")):
            yield f"env {name} is a URL with a password in it; build it from a secretKeyRef ($(VAR) expansion)"
            continue
        if not secret_name(name, cfg):
            continue
        if literal(get(env, "value")):
            yield f"env {name} has a literal value; use valueFrom.secretKeyRef"
        elif get(env, "valueFrom", "configMapKeyRef") is not None:
            yield f"env {name} comes from a ConfigMap; use valueFrom.secretKeyRef"
    headers = [h.lower() for h in cfg["authHeaders"]]
    for where, handler in _handlers(c):
        for header in items(get(handler, "httpGet", "httpHeaders")):
            name = str(get(header, "name", default=""))
            if (name.lower() in headers or secret_name(name, cfg)) and literal(get(header, "value")):
                yield f"{where} sends header {name} with a literal value; probe with exec reading the key from the env"
        command = " ".join(str(plain(word)) for word in items(get(handler, "exec", "command")))
        if any(literal(m.group(1)) for m in _HEADER_IN_COMMAND.finditer(command)):
            yield f"{where} exec command carries a literal credential header; read it from an env variable"
    words = items(get(c, "command")) + items(get(c, "args"))
    argv = _argv(words)
    for i, word in enumerate(argv):
        for flag in cfg["argFlags"]:
            value = argv[i + 1] if word == flag and i + 1 < len(argv) else (
                word[len(flag) + 1:] if word.startswith(flag + "=") else None)
            if value is not None and literal(value):
                yield f"{flag} is given literally on the command line; pass $(ENV_VAR) from a secretKeyRef"
    if any(literal(m.group(1)) for m in _HEADER_IN_COMMAND.finditer(" ".join(str(plain(w)) for w in words))):
        yield "the command line carries a literal credential header; read it from an env variable"


def validate_kubernetes_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, K8S_SECRETS_SCHEMA)
    if args.resource_type == CONFIG_MAP:
        for section in ("data", "binaryData"):
            for key in mapping(get(args.props, section)):
                value = get(args.props, section, key)
                if (secret_name(key, cfg) and literal(value)) or url_credential(value):
                    report(f"ConfigMap {section}.{key} looks like a credential: ConfigMaps are meant to be readable and "
                           "are not encrypted at rest like Secrets; move it to a Secret.")
        return
    spec = pod_spec(args)
    if spec is None:
        return
    for c in _containers(spec):
        for problem in _container_secrets(c, cfg):
            # In the pod spec the value is readable by anyone who may read the object,
            # whether or not it is a Pulumi secret in the state.
            report(f"container {get(c, 'name', default='?')}: {problem}.")


SECRET_INPUTS_SCHEMA = _schema(
    **NAME_PROPERTIES,
    secretMarkers={"type": "boolean", "default": False,
                   "description": "Whether Pulumi secrets arrive wrapped in pulumi_policy.Secret. gpu-fleet's offline "
                                  "evaluation sets it; `pulumi preview`/`up` decrypt secrets without a marker "
                                  "(pulumi/pulumi-policy#241), so there the check reports itself not applicable."},
)


def plaintext_credentials(value: Any, cfg: Mapping, path: str = "") -> Iterator[str]:
    """Paths of credential-like values in ``value`` that are not Pulumi secrets: keys named
    like credentials, and ``{name: <credential name>, value: ...}`` pairs (env lists)."""
    if isinstance(value, Secret):
        return
    if isinstance(value, Mapping):
        if "name" in value and "value" in value and secret_name(value["name"], cfg) \
                and not isinstance(value["value"], Secret) and literal(value["value"]):
            yield f"{path}[name={plain(value['name'])}].value"
        for key in value:
            inner, where = value[key], f"{path}.{key}" if path else str(key)
            if secret_name(key, cfg) and not isinstance(inner, Secret) and literal(inner):
                yield where
            else:
                yield from plaintext_credentials(inner, cfg, where)
    elif _is_list(value):
        for i, inner in enumerate(value):
            yield from plaintext_credentials(inner, cfg, f"{path}[{i}]")


def validate_secret_inputs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in POD_SPEC_PATHS or args.resource_type == CONFIG_MAP:
        return  # kubernetes-no-plaintext-secrets judges these, secret or not
    cfg = settings(args, SECRET_INPUTS_SCHEMA)
    found = list(plaintext_credentials(args.props, cfg))
    if not found:
        return
    if not cfg["secretMarkers"]:
        # Raises: pulumi_policy records the policy as not applicable to this resource.
        args.not_applicable(f"{', '.join(found)} may be Pulumi secrets: this run passes secrets without a marker")
    report(f"credential-like inputs are plaintext, not Pulumi secrets: {', '.join(found)}; wrap them in "
           "pulumi.Output.secret(...) (or read them with Config.require_secret) so the state and every plan keep "
           "them encrypted.")
