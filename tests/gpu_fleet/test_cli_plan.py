"""``gpu-fleet plan``: exit codes, output formats, manifests and their validation."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from gpu_fleet import cli

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, program: str, fleet_config: dict, stack: str = "demo") -> Path:
    """A throwaway Pulumi project with one stack file and the given program."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "__main__.py").write_text(textwrap.dedent(program))
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").write_text(
        yaml.safe_dump({"config": {"gpu-fleet:fleet": fleet_config}}))
    return tmp_path


def _region_config() -> dict:
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.us-east.yaml").read_text())
    return doc["config"]["gpu-fleet:fleet"]


def test_reference_stacks_plan_cleanly(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "planned 3 stack(s) in" in out
    for stack in ("us-east", "eu-west", "global"):
        assert f"=== stack {stack} " in out
        assert list((tmp_path / stack).glob("*.yaml")) or stack == "global"
    assert "INVALID" not in out
    assert "GPU capacity and cost" in out
    assert "USD/h at the models' min / max replicas" in out
    # The cache's cost on its own line: priced in us-east, unverified (no price) in eu-west.
    assert "    regional cache: 0.3504 USD/h (on-demand list price)" in out
    assert "    regional cache: no price in the catalog (unverified)" in out


def test_json_lists_every_resource(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "us-east", "--format", "json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    (stack,) = doc["stacks"]
    assert stack["stack"] == "us-east"
    types = {r["type"] for r in stack["resources"]}
    assert {"gpufleet:index:Region", "aws:eks/cluster:Cluster", "kubernetes:apps/v1:Deployment"} <= types
    for r in stack["resources"]:
        assert set(r) == {"type", "name", "parent", "provider", "inputs", "options"}
    secret = next(r for r in stack["resources"] if r["type"] == "kubernetes:core/v1:Secret" and r["name"] == "us-east-vllm-secrets")
    assert secret["inputs"]["stringData"] == "[secret]"
    assert stack["outputs"]["kubeconfig"] == "[secret]"
    # Capacity and cost (a PR comment reads stacks[].cost.minHourlyUsd / maxHourlyUsd).
    assert stack["cost"]["minHourlyUsd"] == round(3 * 55.04 + 2 * 27.45, 2)
    assert stack["cost"]["maxHourlyUsd"] == round(20 * 55.04 + 4 * 27.45, 2)
    assert [p["name"] for p in stack["cost"]["pools"]] == ["h100", "a100"]
    assert stack["cost"]["cacheHourlyUsd"] == round(2 * 0.1752, 4)  # primary and replica, cache.r7g.large
    assert stack["capacity"]["maxGpus"] == 160 + 32
    assert stack["capacity"]["pools"][0]["modelGpusAtMaxReplicas"] == 160
    assert doc["fleet"]["cost"] == {k: stack["cost"][k] for k in ("currency", "priceBasis", "minHourlyUsd",
                                                                    "maxHourlyUsd")}
    # The reference pools hold every model at maxReplicas: no shortfall warning.
    assert not any(w.startswith("GPU pool ") for w in stack["warnings"])


def test_config_error_exits_2_naming_file_and_field(fleet, tmp_path, monkeypatch, capsys):
    cfg = _region_config()
    cfg["gpuPools"][0]["gpusPerNode"] = 3
    project = _project(tmp_path, "raise SystemExit('never runs')\n", cfg)
    monkeypatch.chdir(project)
    assert cli.main(["plan", "demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{project / 'stacks' / 'Pulumi.demo.yaml'}: gpuPools[0].gpusPerNode: h100 with 3 GPUs per node "
                   "is not offered in aws us-east-1; valid GPUs per node: 8 (p5.48xlarge)"]


def test_unknown_stack_exits_2(fleet, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["plan", "ap-south"]) == 2
    assert "Pulumi.ap-south.yaml: stack: no such stack file (stacks: eu-west, global, us-east)" in capsys.readouterr().err


def test_program_failure_exits_1_with_one_line(fleet, tmp_path, monkeypatch, capsys):
    project = _project(tmp_path, "raise RuntimeError('boom\\nsecond line')\n", _region_config())
    monkeypatch.chdir(project)
    assert cli.main(["plan"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("plan failed: RuntimeError: boom")


def test_invalid_kubernetes_object_fails_the_plan(fleet, tmp_path, monkeypatch, capsys):
    program = """
        import pulumi_kubernetes as k8s
        k8s.core.v1.ConfigMap("bad", metadata={"name": "bad"}, data={"a": "b"})
        k8s.autoscaling.v2.HorizontalPodAutoscaler("hpa", metadata={"name": "hpa"}, spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 3,
            "metrics": [{"type": "external", "external": {"metric": {"name": "m"}, "target": {"type": "AverageValue", "averageValue": "1"}}}],
        })
    """
    project = _project(tmp_path, program, _region_config())
    monkeypatch.chdir(project)
    assert cli.main(["plan", "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    # The two objects register concurrently: their file numbers may come in either order.
    assert re.search(r"INVALID 00[12]-HorizontalPodAutoscaler-hpa\.yaml: spec\.metrics\[0\]\.type: 'external' is not one of",
                     out), out
    assert [p.name for p in (tmp_path / "out" / "demo").glob("00[12]-ConfigMap-bad.yaml")]


def test_strict_schema_rejects_unknown_fields(fleet, tmp_path, monkeypatch, capsys):
    program = """
        import pulumi_kubernetes as k8s
        k8s.core.v1.Service("svc", metadata={"name": "svc"}, spec={"ports": [{"port": 80}], "selector": {"a": "b"}},
                            opts=None)
        k8s.apiextensions.CustomResource("cr", api_version="example.com/v1", kind="Thing", metadata={"name": "t"},
                                          spec={"anything": 1})
    """
    project = _project(tmp_path, program, _region_config())
    monkeypatch.chdir(project)
    assert cli.main(["plan", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 written" in out and "1 custom resources without a schema" in out


def test_non_compliant_config_reports_policy_violations_and_exits_1(fleet, tmp_path, monkeypatch, capsys):
    cfg = _region_config()
    cfg["models"][0]["autoscaling"] = {
        "minReplicas": 1,
        "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]},
    }
    project = _project(tmp_path, (REPO / "__main__.py").read_text(), cfg, stack="us-east")
    shutil.copytree(REPO / "policies", project / "policies", ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    monkeypatch.chdir(project)
    assert cli.main(["plan", "--format", "json", "--out", str(tmp_path / "build")]) == 1
    doc = json.loads(capsys.readouterr().out)
    found = {(v["policy"], v["resourceName"], v["enforcementLevel"]) for v in doc["stacks"][0]["policyViolations"]}
    assert found == {
        ("hpa-min-replicas", "us-east-llama-3-1-70b-hpa", "mandatory"),
        ("hpa-scale-down-slow", "us-east-llama-3-1-70b-hpa", "mandatory"),
    }


def test_anycast_example_plans_with_two_aws_regions(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    config = "examples/anycast/stacks/Pulumi.global.yaml"
    assert cli.main(["plan", "--config", config, "--format", "json", "--out", str(tmp_path)]) == 0
    stacks = json.loads(capsys.readouterr().out)["stacks"]
    # A global stack file plans, shows and checks its regions too.
    assert [s["stack"] for s in stacks] == ["use1", "usw2", "global"]
    assert all(s["manifests"]["errors"] == [] for s in stacks)
    assert all(s["policyViolations"] == [] for s in stacks[:-1])
    stack = stacks[-1]
    types = [r["type"] for r in stack["resources"]]
    assert types.count("aws:globalaccelerator/accelerator:Accelerator") == 1
    groups = [r["inputs"] for r in stack["resources"] if r["type"] == "aws:globalaccelerator/endpointGroup:EndpointGroup"]
    assert sorted(g["endpointGroupRegion"] for g in groups) == ["us-east-1", "us-west-2"]
    assert all(g["endpointConfigurations"][0]["endpointId"].startswith("arn:aws:elasticloadbalancing:") for g in groups)
    assert "aws:route53/healthCheck:HealthCheck" not in types
    assert stack["outputs"]["routingMode"] == "anycast"
    # ALB checks (10 s) + Global Accelerator's documented 30 s: the 30 s target is missed,
    # an advisory finding, the only one.
    assert stack["outputs"]["failoverBudgetSeconds"] == 40
    assert [(v["policy"], v["enforcementLevel"]) for v in stack["policyViolations"]] == [
        ("global-failover-budget", "advisory")]


def test_ten_region_example_plans_every_region_and_the_global(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    config = "examples/ten-regions/stacks/Pulumi.global.yaml"
    assert cli.main(["plan", "--config", config, "--format", "json", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    stacks = {s["stack"]: s for s in result["stacks"]}
    assert list(stacks) == ["use1", "usw2", "use4", "euw2", "euw4", "apne1", "apse1", "apse2", "ause1", "sae1",
                            "global"]
    for name, stack in stacks.items():
        assert stack["policyViolations"] == [], name
        assert stack["manifests"]["errors"] == [], name
    clouds = {n: s["outputs"].get("cloud") for n, s in stacks.items() if n != "global"}
    assert sorted(clouds.values()) == ["aws"] * 6 + ["gcp"] * 4
    o = stacks["global"]["outputs"]
    assert o["failoverBudgetSeconds"] == 25 and o["failoverBudget"]["meetsTarget"] is True
    labels = o["latencyLabels"]["llama-3-1-70b"]
    assert labels["us-east-1"] == ["use1", "use4"] and labels["ap-southeast-2"] == ["apse2", "ause1"]
    assert len(labels) == 8  # ten regions under eight Route 53 latency labels
    records = [r["inputs"] for r in stacks["global"]["resources"] if r["type"] == "aws:route53/record:Record"]
    latency = [r for r in records if "latencyRoutingPolicies" in r]
    assert len(latency) == 2 * 8  # one per model and label
    weighted = [r for r in records if "weightedRoutingPolicies" in r]
    assert len(weighted) == 2 * 4 and all(r.get("healthCheckId") for r in weighted)
    assert {r["weightedRoutingPolicies"][0]["weight"] for r in weighted if r["setIdentifier"] == "use1"} == {3}
    checks = [r for r in stacks["global"]["resources"] if r["type"] == "aws:route53/healthCheck:HealthCheck"]
    assert len(checks) == 2 * 10
    assert not [w for w in stacks["global"]["warnings"] if "failover budget" in w]


def test_the_cached_validator_reports_what_kubernetes_validate_reports():
    import kubernetes_validate

    from gpu_fleet import manifests

    good = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}}}
    bad = {**good, "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "a", "bogus": 1}]}}}}
    assert manifests.validate(good) == (True, [])
    checked, errors = manifests.validate(bad)
    with pytest.raises(kubernetes_validate.ValidationError) as raised:
        kubernetes_validate.validate(bad, manifests.KUBERNETES_VERSION, strict=True)
    where = ".".join(str(p) for p in raised.value.path)
    assert checked and errors == [f"{where}: {raised.value.message}"]
    assert manifests.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}}) == (False, [])


# --------------------------------------------------------------------------- annotations past Kubernetes' limit


def _cidrs(n: int) -> list[str]:
    """``n`` distinct /32 ranges (16 bytes each with the comma: 10.x.y.z/32)."""
    return [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32" for i in range(n)]


def test_allowed_cidrs_past_the_annotation_limit_are_a_config_error(fleet, tmp_path, monkeypatch, capsys):
    cfg = _region_config()
    cfg["entrypoint"]["allowedCidrs"] = _cidrs(20_000)
    project = _project(tmp_path, "raise SystemExit('never runs')\n", cfg)
    monkeypatch.chdir(project)
    assert cli.main(["plan", "demo", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{project / 'stacks' / 'Pulumi.demo.yaml'}: entrypoint.allowedCidrs: "
                                               f"20,000 ranges take {len(','.join(_cidrs(20_000))):,} bytes of the "
                                               "Ingress's annotations"), err
    assert "Kubernetes limits to 262,144 bytes" in err[0] and err[0].endswith("merge them into fewer, wider ranges")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("raising", [
    # The program found it in cloud data (us-east-1 has six zones in the mock; EKS cannot use use1-az3).
    "from gpu_fleet.components.aws_cluster import eks_zones\n"
    "eks_zones(['a', 'b', 'c'], ['use1-az1', 'use1-az3', 'use1-az4'], 3)\n",
    "from gpu_fleet.components.problem import Problem, ProblemError\n"
    "raise ProblemError(Problem('gpuPools[0].zones', 'us-east-1z is not offered'))\n",
])
def test_a_problem_the_program_finds_is_a_config_error(fleet, tmp_path, monkeypatch, capsys, raising):
    project = _project(tmp_path, raising, _region_config())
    monkeypatch.chdir(project)
    assert cli.main(["plan", "demo", "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{project / 'stacks' / 'Pulumi.demo.yaml'}: ")
    assert ": network.zoneCount: is 3 but the region has only 2 zones EKS supports: a, c" in line or \
        line.endswith(": gpuPools[0].zones: us-east-1z is not offered"), line


def test_the_annotation_budget_of_allowed_cidrs_and_certificate_is_exact():
    from gpu_fleet.components.config import (INGRESS_OTHER_ANNOTATIONS_BYTES, KUBERNETES_ANNOTATIONS_MAX_BYTES, EntrypointConfig,
                                   ingress_annotation_problems)

    entry = EntrypointConfig.model_validate({**_region_config()["entrypoint"], "allowedCidrs": _cidrs(10_000)})
    room = KUBERNETES_ANNOTATIONS_MAX_BYTES - INGRESS_OTHER_ANNOTATIONS_BYTES - len(",".join(_cidrs(10_000)))
    assert ingress_annotation_problems(entry.model_copy(update={"certificate": "a" * room}), "aws") == []
    over = entry.model_copy(update={"certificate": "a" * (room + 1)})
    assert [p.path for p in ingress_annotation_problems(over, "aws")] == ["entrypoint.allowedCidrs"]
    # On GCP the ranges go to Cloud Armor and the certificate is a short name, not into annotations.
    assert ingress_annotation_problems(over, "gcp") == []


def test_the_ingress_annotations_besides_ranges_and_certificate_fit_the_room_kept_for_them():
    from gpu_fleet.components.config import INGRESS_OTHER_ANNOTATIONS_BYTES, EntrypointConfig
    from gpu_fleet.components.entrypoint import ALB_NAME_MAX, alb_annotations

    entry = EntrypointConfig.model_validate(_region_config()["entrypoint"])
    # The longest load balancer name, six zones' subnets, the health checkers' prefix list.
    annotations = alb_annotations(entry, "n" * ALB_NAME_MAX, [f"subnet-{i:017x}" for i in range(6)], "pl-" + "0" * 17)
    other = {k: v for k, v in annotations.items() if v not in (entry.certificate, ",".join(map(str, entry.allowed_cidrs)))}
    assert len(other) == len(annotations) - 2
    assert sum(len(k.encode()) + len(v.encode()) for k, v in other.items()) <= INGRESS_OTHER_ANNOTATIONS_BYTES


def test_an_object_past_the_annotation_limit_exits_2_and_writes_nothing(fleet, tmp_path, monkeypatch, capsys):
    # The backstop for objects the config check cannot foresee: any object, checked before writing.
    program = """
        import pulumi_kubernetes as k8s
        k8s.core.v1.ConfigMap("ok", metadata={"name": "ok"}, data={"a": "b"})
        k8s.core.v1.ConfigMap("big", metadata={"name": "big", "namespace": "ns",
                                               "annotations": {"a": "x" * (256 * 1024)}}, data={"a": "b"})
    """
    project = _project(tmp_path, program, _region_config())
    monkeypatch.chdir(project)
    assert cli.main(["plan", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{project / 'stacks' / 'Pulumi.demo.yaml'}: ConfigMap ns/big: metadata.annotations: 262,145 bytes; "
                   "Kubernetes accepts at most 262,144 in all"]
    assert not (tmp_path / "out" / "demo").exists()


def test_annotations_at_the_limit_are_accepted_one_byte_more_refused():
    from gpu_fleet import manifests

    def config_map(value: str) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "annotations": {"ab": value}}}

    manifests.check_annotations([config_map("é" * (128 * 1024 - 1))])  # 2 + 2 * 131,071 bytes: the limit
    with pytest.raises(manifests.ObjectTooLarge, match=r"^ConfigMap m: metadata.annotations: 262,145 bytes"):
        manifests.check_annotations([config_map("é" * (128 * 1024 - 1) + "x")])


# --------------------------------------------------------------------------- Ctrl-C while the command starts

_INTERRUPT_AT_IMPORT = """
import importlib.abc, runpy, sys

class CtrlC(importlib.abc.MetaPathFinder):
    # Ctrl-C arrives while {module} is being imported.
    def find_spec(self, name, path, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
sys.argv = ["gpu-fleet", *{argv!r}]
runpy.run_module("gpu_fleet.cli", run_name="__main__")
"""


@pytest.mark.parametrize("module, argv", [
    ("gpu_fleet.components.config", ["plan", "us-east"]),                     # the CLI's own imports, before main()
    ("gpu_fleet.simulate.cli", ["simulate", "us-east", "--help"]),  # simulate's options, while parsing
    ("gpu_fleet.engine", ["plan", "us-east"]),                      # the planning machinery, after validation
])
def test_ctrl_c_while_starting_exits_130_with_one_line(tmp_path, module, argv):
    script = _INTERRUPT_AT_IMPORT.format(module=module, argv=[*argv, "--out", str(tmp_path / "out")]
                                         if argv[0] == "plan" else argv)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (130, ["gpu-fleet: interrupted"])


def test_a_failure_after_a_swallowed_ctrl_c_is_reported_as_the_interrupt(tmp_path):
    # A library that swallows KeyboardInterrupt (half an import) fails later; that echo is not a second line.
    program = """
        import os, signal, time
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except BaseException:
            pass
        raise AttributeError("module 'x' has no attribute 'y'")
    """
    project = _project(tmp_path, program, _region_config())
    proc = subprocess.run([sys.executable, "-m", "gpu_fleet.cli", "plan", "--out", str(tmp_path / "out")], cwd=project,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (130, ["gpu-fleet: interrupted"])
