"""gpu-fleet's policies for the regional cache's clients: the gateway beside each vLLM
server (components/gateway.py) and anything else handed the cache's Redis settings.

Listed by ``policies/rules.py`` (:data:`POLICIES`); reads objects with ``resource_access``,
as every rule module does.

What the rules hold (LiteLLM 1.110.2, which reads ``REDIS_<ARG>`` variables as redis.Redis
arguments: litellm/_redis.py):

- ``cache-client-tls-and-timeouts``: a container given the cache's address
  (``REDIS_HOST``) also gets ``REDIS_SSL=true`` (the caches accept TLS only), the AUTH
  token from a Secret (``REDIS_PASSWORD`` by ``secretKeyRef``), a connect timeout
  (``REDIS_SOCKET_CONNECT_TIMEOUT``: without one an unreachable cache stalls each new
  connection until TCP gives up, and serving with it), no plaintext ``redis://``
  ``REDIS_URL``, and its pod carries the cache-client label, the only pods the cache's
  egress NetworkPolicy admits.
- ``gateway-api-key``: a gateway container (a ``litellm`` image) takes its master key,
  the key every ``/v1`` request must present, from a Secret (``LITELLM_MASTER_KEY`` by
  ``secretKeyRef``): without it the proxy would refuse to start or, told to permit it,
  serve anyone (litellm/proxy/auth/master_key_boot_check.py).
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from contract import CACHE_CLIENT_LABEL
from resource_access import _containers, _labels, get, items, pod_spec

GATEWAY_IMAGE = "litellm"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"


def env_of(container: Any) -> dict[str, Any]:
    return {get(e, "name"): e for e in items(get(container, "env"))}

def from_secret(entry: Any) -> bool:
    return bool(get(entry, "valueFrom", "secretKeyRef", "name")) and not get(entry, "value")

def validate_cache_clients(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args)
    if spec is None:
        return
    for c in _containers(spec):
        env = env_of(c)
        if "REDIS_HOST" not in env:
            continue
        name = get(c, "name")
        if str(get(env.get("REDIS_SSL"), "value", default="")).lower() != "true":
            report(f"container {name} is given the regional cache without REDIS_SSL=true: the caches accept TLS "
                   "only, so every lookup would fail.")
        if "REDIS_PASSWORD" not in env or not from_secret(env["REDIS_PASSWORD"]):
            report(f"container {name}: REDIS_PASSWORD must come from the cache Secret (secretKeyRef), never be "
                   "missing or written into the pod spec.")
        if "REDIS_SOCKET_CONNECT_TIMEOUT" not in env:
            report(f"container {name}: no REDIS_SOCKET_CONNECT_TIMEOUT: an unreachable cache would stall "
                   "requests instead of letting them go on without it.")
        url = str(get(env.get("REDIS_URL"), "value", default=""))
        if url.startswith("redis://"):
            report(f"container {name}: REDIS_URL is plaintext redis://; the caches accept rediss:// only.")
        if _labels(args).get(CACHE_CLIENT_LABEL) != "true":
            report(f"container {name} uses the regional cache but its pod lacks {CACHE_CLIENT_LABEL}=true: the cache's "
                   "egress NetworkPolicy admits only labelled pods.")

def validate_gateway_key(args: ResourceValidationArgs, report: ReportViolation) -> None:
    spec = pod_spec(args)
    if spec is None:
        return
    for c in _containers(spec):
        image = str(get(c, "image", default="")).rsplit("/", 1)[-1]
        if not image.startswith(GATEWAY_IMAGE):
            continue
        entry = env_of(c).get(MASTER_KEY_ENV)
        if entry is None or not from_secret(entry):
            report(f"gateway container {get(c, 'name')}: {MASTER_KEY_ENV} must come from a Secret "
                   "(secretKeyRef): it is the API key every /v1 request is checked against.")

POLICIES = [
    ResourceValidationPolicy(
        name="cache-client-tls-and-timeouts",
        description="Containers given the regional cache's address use TLS, the AUTH token from its Secret and a "
                    "connect timeout, and their pods carry the label its egress NetworkPolicy admits.",
        validate=validate_cache_clients, enforcement_level=EnforcementLevel.MANDATORY),
    ResourceValidationPolicy(
        name="gateway-api-key",
        description="The gateway in front of the models checks the API key, taken from a Secret.",
        validate=validate_gateway_key, enforcement_level=EnforcementLevel.MANDATORY),
]
