"""The cache-client policies of ``policies/cache_rules.py``, registered through
``policies/rules.py``, on synthetic Deployments and on the gateway's rendered pod."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs
from pulumi_policy.proxy import unknown_checking_proxy

from gpu_fleet.components import gateway as gw
from gpu_fleet.components import model_deployment as md
from gpu_fleet.components.config import parse_fleet, pool_offering
from gpu_fleet.components.sizing import size_model
from gpu_fleet.policy_check import load_pack

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


POLICIES = {p.name: p for p in load_pack(REPO)["rules"].POLICIES}


def check(policy: str, props: dict) -> list[str]:
    found: list[str] = []
    args = ResourceValidationArgs(DEPLOYMENT, unknown_checking_proxy(props), f"urn:pulumi:t::p::{DEPLOYMENT}::r",
                                  "r", OPTS, None, None)
    POLICIES[policy].validate(args, lambda message, urn=None: found.append(message))
    return found


def _rendered(cloud_stack: str) -> dict:
    """The gateway-carrying Deployment as the model component renders it."""
    raw = yaml.safe_load((REPO / "stacks" / f"Pulumi.{cloud_stack}.yaml").read_text())["config"]["gpu-fleet:fleet"]
    cfg = parse_fleet(raw, f"stacks/Pulumi.{cloud_stack}.yaml", REPO / "stacks")
    model = cfg.models[0]
    pool = next(p for p in cfg.gpu_pools if p.name == model.pool)
    shape = pool_offering(cfg, pool).shape
    sizing = size_model(model, shape)
    budget = md.startup_budget_seconds(sizing)
    spec = md.deployment_spec(model, pool, shape, sizing, startup_budget=budget,
                              rollout_timeout=md.rollout_timeout_seconds(sizing, 1, pool.provisioning_seconds, budget),
                              secret_name="vllm-secrets", cache_secret_name="redis-connection", gateway=cfg.gateway)
    return {"metadata": {"name": "vllm-m"}, "spec": spec}


def _gateway(props: dict) -> dict:
    return next(c for c in props["spec"]["template"]["spec"]["containers"] if c["name"] == gw.CONTAINER_NAME)


def test_both_policies_are_in_the_pack():
    assert {"cache-client-tls-and-timeouts", "gateway-api-key"} <= set(POLICIES)


@pytest.mark.parametrize("stack", ["us-east", "eu-west"])
def test_the_rendered_gateway_passes(stack):
    props = _rendered(stack)
    assert check("cache-client-tls-and-timeouts", props) == []
    assert check("gateway-api-key", props) == []


def _without(props: dict, name: str) -> dict:
    c = _gateway(props)
    c["env"] = [e for e in c["env"] if e["name"] != name]
    return props


def test_a_cache_client_without_tls_or_timeout_or_label_is_refused():
    assert any("TLS" in m for m in check("cache-client-tls-and-timeouts", _without(_rendered("us-east"), "REDIS_SSL")))
    found = check("cache-client-tls-and-timeouts", _without(_rendered("us-east"), "REDIS_SOCKET_CONNECT_TIMEOUT"))
    assert len(found) == 1 and "stall" in found[0]
    unlabelled = _rendered("us-east")
    del unlabelled["spec"]["template"]["metadata"]["labels"]["gpu-fleet/cache-client"]
    found = check("cache-client-tls-and-timeouts", unlabelled)
    assert len(found) == 1 and "NetworkPolicy" in found[0]


def test_a_literal_redis_password_or_plaintext_url_is_refused():
    props = _rendered("eu-west")
    c = _gateway(props)
    c["env"] = [{"name": "REDIS_PASSWORD", "value": "hunter2"} if e["name"] == "REDIS_PASSWORD" else e
                for e in c["env"]] + [{"name": "REDIS_URL", "value": "redis://10.0.0.3:6378"}]
    found = check("cache-client-tls-and-timeouts", props)
    assert len(found) == 2 and any("secretKeyRef" in m for m in found) and any("plaintext" in m for m in found)


def test_a_gateway_without_the_api_key_from_a_secret_is_refused():
    found = check("gateway-api-key", _without(_rendered("us-east"), gw.MASTER_KEY_ENV))
    assert len(found) == 1 and "API key" in found[0]
    props = _rendered("us-east")
    c = _gateway(props)
    c["env"] = [{"name": gw.MASTER_KEY_ENV, "value": "sk-literal"} if e["name"] == gw.MASTER_KEY_ENV else e
                for e in c["env"]]
    assert len(check("gateway-api-key", props)) == 1


def test_pods_without_the_cache_are_left_alone():
    plain = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx",
                                                            "env": [{"name": "OTHER", "value": "x"}]}]}}}}
    assert check("cache-client-tls-and-timeouts", plain) == [] and check("gateway-api-key", plain) == []
