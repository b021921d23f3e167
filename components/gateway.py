"""The gateway: a LiteLLM proxy beside each vLLM server, the regional cache its shared state.

Why this is what the regional cache does by default (the README's *The regional cache*
has the figures): LMCache's Redis tier makes time to first token worse for the reference
models (``benchmarks/cache_bench.py``: reading a 256-token chunk of 70B KV from a cache node
takes longer than recomputing it), while an exact-match response cache answers a repeated
request without touching a GPU (``benchmarks/response_cache_bench.py``). LiteLLM keeps that
cache in Redis, so every replica of a model, in every zone, shares it.

Each vLLM pod gets a second container, ``gateway`` (:data:`pins.LITELLM`), listening on
:data:`GATEWAY_PORT`; the load balancer sends ``/v1`` there and ``/health`` to vLLM as
before, so the per-model health checks and failover are unchanged. The gateway checks the
client's key (LiteLLM's master key, ``LITELLM_MASTER_KEY``: the fleet's API key, from the
serving Secret), looks the request up in Redis, and on a miss forwards it to vLLM over the
pod's loopback with the same key. Read at litellm 1.110.2 (the wheel the image is built
from; :data:`pins.LITELLM`):

- Config: ``model_list`` entries with ``litellm_params`` (``model: hosted_vllm/<name>``,
  ``api_base``, ``api_key: os.environ/VLLM_API_KEY``, the ``os.environ/`` reference
  resolved when the proxy reads its config: proxy/proxy_server.py ``ProxyConfig.get_config``,
  as proxy/read_model_list.py describes); ``litellm --config <file> --port <n>``
  (litellm_cli/main.py, proxy/proxy_cli.py); ``LITELLM_MASTER_KEY`` read from the
  environment (proxy/proxy_server.py); ``/health/liveliness`` unauthenticated
  (proxy/health_endpoints/_health_endpoints.py). None of LiteLLM's unauthenticated routes
  (proxy/_types.py ``LiteLLMRoutes.public_routes``) is under ``/v1``, the only prefix the
  load balancer sends to the gateway.

- Cache: ``litellm_settings.cache: true`` with ``cache_params`` (``type: redis``, ``mode``,
  ``ttl``, ``socket_timeout``) builds ``Cache(**cache_params)`` (proxy/proxy_server.py);
  ``type`` and ``host`` left to the environment: RedisCache merges ``REDIS_<ARG>`` variables
  into redis.Redis' arguments (``_redis.py`` ``_get_redis_env_kwarg_mapping``, for every
  ``redis.Redis.__init__`` parameter), so ``REDIS_HOST``, ``REDIS_PORT``, ``REDIS_PASSWORD``,
  ``REDIS_SSL``, ``REDIS_SSL_CA_CERTS`` and ``REDIS_SOCKET_CONNECT_TIMEOUT`` configure TLS and
  AUTH. ``REDIS_URL`` is not given (it would take precedence over host and port).
- Fail-safe: RedisCache's start-up ping and ``info()`` log errors and go on
  (caching/redis_cache.py ``_setup_health_pings``), ``async_get_cache`` returns None (a miss)
  on any Redis error and a failed write is dropped, behind a circuit breaker, so with the
  cache down requests go to vLLM. :data:`REDIS_SOCKET_TIMEOUT_SECONDS` bounds what an
  unreachable cache adds to a request (RedisCache's own default is 5 s).
- What is cached: requests with at most ``max_messages`` (default 4) messages
  (caching.py ``Cache.__init__``), keyed on the model and every request parameter; longer
  conversations are never looked up or stored.
- No database: without ``DATABASE_URL`` the proxy authenticates the master key only
  (proxy/auth/user_api_key_auth.py: another key without a database is refused "No connected
  db."); per-client virtual keys, budgets and spend tracking need Postgres and are not
  built here.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from .config import GatewayConfig, ModelConfig

GATEWAY_PORT = 4000
#: The container port's and the Service port's name.
GATEWAY_PORT_NAME = "gateway"
CONTAINER_NAME = "gateway"
CONFIG_MOUNT = "/etc/litellm"
CONFIG_FILE = "config.yaml"
#: Unauthenticated liveness of the proxy process (``/health`` needs the key and calls the models).
HEALTH_PATH = "/health/liveliness"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
#: LiteLLM's provider for an OpenAI-compatible vLLM server (litellm/llms/hosted_vllm).
PROVIDER = "hosted_vllm"
#: A cache that does not answer within this costs a request at most this much per lookup.
REDIS_SOCKET_TIMEOUT_SECONDS = 1
REDIS_CONNECT_TIMEOUT_SECONDS = 1
#: Keys of the ``redis-connection`` Secret that LiteLLM reads under the same names.
REDIS_SECRET_ENV = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")
#: An assumption, not a measurement: a Python proxy with a few hundred requests in flight.
#: Requests equal limits so the pod keeps Guaranteed QoS; the vLLM container's share of
#: the node is reduced by as much (gpu_fleet.components.model_deployment.container_resources).
CPU_MILLIS, MEMORY_GIB = 500, 2
RESOURCES = {"requests": {"cpu": f"{CPU_MILLIS}m", "memory": f"{MEMORY_GIB}Gi"},
             "limits": {"cpu": f"{CPU_MILLIS}m", "memory": f"{MEMORY_GIB}Gi"}}


def config_map_name(model: ModelConfig) -> str:
    return f"gateway-{model.name}"


def litellm_config(model: ModelConfig, vllm_port: int, gateway: GatewayConfig, with_cache: bool,
                   api_key_env: str) -> dict:
    """LiteLLM's config file for one model (no secret in it: ``os.environ/`` references)."""
    config: dict = {
        "model_list": [{
            "model_name": model.name,
            "litellm_params": {
                "model": f"{PROVIDER}/{model.name}",
                "api_base": f"http://127.0.0.1:{vllm_port}/v1",
                "api_key": f"os.environ/{api_key_env}",
            },
        }],
    }
    if with_cache:
        config["litellm_settings"] = {
            "cache": True,
            "cache_params": {"type": "redis", "mode": gateway.cache_mode, "ttl": gateway.cache_ttl_seconds,
                             "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS},
        }
    return config


def config_text(config: dict) -> str:
    """The config as the file LiteLLM reads with a YAML loader (JSON is YAML)."""
    return json.dumps(config, indent=2, sort_keys=True)


def redis_env(cache_secret_name: Any, cloud: str, ca_file: Optional[str]) -> list[dict]:
    """The cache's address and AUTH token by reference, TLS on, short timeouts; on GCP the
    Memorystore CA file (``ca_file``), without the host name check: Memorystore answers on
    an IP and signs with a CA of its own per instance (whether its certificate names the IP
    is unverified)."""
    env = [{"name": key, "valueFrom": {"secretKeyRef": {"name": cache_secret_name, "key": key}}}
           for key in REDIS_SECRET_ENV]
    env += [
        {"name": "REDIS_SSL", "value": "true"},
        {"name": "REDIS_SOCKET_CONNECT_TIMEOUT", "value": str(REDIS_CONNECT_TIMEOUT_SECONDS)},
    ]
    if cloud == "gcp":
        if not ca_file:
            raise ValueError("the gateway needs Memorystore's CA file on GCP")
        env += [{"name": "REDIS_SSL_CA_CERTS", "value": ca_file},
                {"name": "REDIS_SSL_CHECK_HOSTNAME", "value": "false"}]
    return env


def container(image: str, api_key_ref: dict, api_key_env: str, cache_env: list[dict]) -> dict:
    """The ``gateway`` container. ``api_key_ref``: the serving Secret's API key
    (``valueFrom``), given as the master key clients present and as the key for vLLM."""
    probe = {"httpGet": {"path": HEALTH_PATH, "port": GATEWAY_PORT_NAME}, "periodSeconds": 10, "timeoutSeconds": 5}
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "command": ["litellm"],
        "args": ["--config", f"{CONFIG_MOUNT}/{CONFIG_FILE}", "--port", str(GATEWAY_PORT)],
        "ports": [{"name": GATEWAY_PORT_NAME, "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": [{"name": MASTER_KEY_ENV, "valueFrom": api_key_ref},
                {"name": api_key_env, "valueFrom": api_key_ref}, *cache_env],
        "resources": RESOURCES,
        "volumeMounts": [{"name": "gateway-config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def config_volume(model: ModelConfig) -> dict:
    return {"name": "gateway-config", "configMap": {"name": config_map_name(model)}}


def stores(gateway: GatewayConfig) -> str:
    """What the gateway keeps in the regional cache, for the plan."""
    which = "every request" if gateway.cache_mode == "default_on" else 'requests sent with "cache": {"use-cache": true}'
    return (f"LiteLLM exact-match response cache: answers to {which} with at most 4 messages, keyed on model, "
            f"messages and sampling parameters, kept {gateway.cache_ttl_seconds} s (evicted LRU when full)")
