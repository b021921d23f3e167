"""What a real preview needs beyond the config: the secrets' source and the API endpoint's reach."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from gpu_fleet.components.config import ConfigError, parse_fleet, read_stack_file
from gpu_fleet import cli, readiness

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"
US_EAST = STACKS / "Pulumi.us-east.yaml"
EU_WEST = STACKS / "Pulumi.eu-west.yaml"
SECRETS = ["gpu-fleet:huggingFaceToken", "gpu-fleet:apiKey"]


def _stack_file(tmp_path: Path, *, environment=None, secure=(), name="us-east") -> Path:
    doc = yaml.safe_load(US_EAST.read_text())
    doc.pop("environment", None)
    if environment is not None:
        doc["environment"] = environment
    for key in secure:
        doc["config"][key] = {"secure": "v1:AAAA"}
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _report(path: Path) -> readiness.SecretsReport:
    return readiness.secrets_report(read_stack_file(path), "region", readiness.stack_environments(path))


# --------------------------------------------------------------------------- secrets


def test_reference_region_stacks_import_an_esc_environment():
    for path in (US_EAST, EU_WEST):
        report = _report(path)
        assert report.environments == (f"gpu-fleet/{path.name.split('.')[1]}",)
        assert report.sources == {k: readiness.ESC_SOURCE for k in SECRETS}
        assert report.missing == [] and report.warnings(path.name) == []


def test_secure_values_in_the_stack_file_come_first(tmp_path):
    report = _report(_stack_file(tmp_path, environment=["gpu-fleet/us-east"], secure=[SECRETS[0]]))
    assert report.sources == {SECRETS[0]: readiness.STACK_FILE_SOURCE, SECRETS[1]: readiness.ESC_SOURCE}
    assert readiness.STACK_FILE_SOURCE in report.summary() and "gpu-fleet/us-east" in report.summary()


def test_a_secret_without_any_source_warns_by_name(tmp_path):
    path = _stack_file(tmp_path, secure=[SECRETS[1]])
    report = _report(path)
    assert report.missing == [SECRETS[0]]
    (warning,) = report.warnings(path.name)
    assert warning.startswith(f"secret {SECRETS[0]} has no source") and path.name in warning
    assert "Missing required configuration variable" in warning


def test_global_stacks_need_no_secret():
    report = readiness.secrets_report(read_stack_file(STACKS / "Pulumi.global.yaml"), "global", ())
    assert report.sources == {} and report.summary() == "none required"


@pytest.mark.parametrize("value", ["gpu-fleet/us-east", [""], [3], {"a": 1}])
def test_a_malformed_environment_list_is_a_config_error(tmp_path, value):
    path = _stack_file(tmp_path, environment=value)
    with pytest.raises(ConfigError, match=r"Pulumi\.us-east\.yaml: environment: must be a list"):
        readiness.stack_environments(path)


# --------------------------------------------------------------------------- reachability


def _region(public, existing=False, private=()):
    raw = copy.deepcopy(yaml.safe_load(US_EAST.read_text())["config"]["gpu-fleet:fleet"])
    raw["cluster"]["publicAccessCidrs"] = public
    if private:
        raw["cluster"]["privateAccessCidrs"] = list(private)
    if existing:
        raw["network"] = {"existing": {"vpcId": "vpc-1", "privateSubnetIds": ["a", "b"], "publicSubnetIds": ["c", "d"]}}
    return parse_fleet(raw, str(US_EAST), STACKS)


def _nets(*cidrs):
    return [ipaddress.IPv4Network(c) for c in cidrs]


def test_a_runner_egress_inside_the_public_cidrs_reaches_the_endpoint():
    assert readiness.endpoint_notes(_region(["203.0.113.0/24"]), _nets("203.0.113.16/28")) == []


def test_a_runner_outside_every_allowed_network_is_named():
    (note,) = readiness.endpoint_notes(_region(["203.0.113.0/24"]), _nets("198.51.100.0/24"))
    assert note.startswith("deployer network 198.51.100.0/24 cannot reach the cluster API")
    assert "203.0.113.0/24" in note and "10.40.0.0/16" in note


def test_a_private_only_endpoint_is_reachable_from_inside_the_vpc_only():
    cfg = _region([])
    (outside,) = readiness.endpoint_notes(cfg, _nets("203.0.113.0/24"))
    assert "not publicly at all" in outside
    (inside,) = readiness.endpoint_notes(cfg, _nets("10.40.200.0/24"))
    assert "inside the VPC" in inside and "cluster.privateAccessCidrs" in inside  # EKS: not admitted yet


def test_runners_listed_in_private_access_cidrs_reach_the_private_endpoint():
    cfg = _region([], private=["10.40.200.0/24"])
    assert readiness.endpoint_notes(cfg, _nets("10.40.200.0/25")) == []
    (other,) = readiness.endpoint_notes(cfg, _nets("10.40.100.0/24"))
    assert "cluster.privateAccessCidrs" in other


def test_an_existing_network_checks_the_public_side_only():
    (note,) = readiness.endpoint_notes(_region(["203.0.113.0/24"], existing=True), _nets("10.40.0.0/24"))
    assert "inside the existing network" in note


def test_no_deployer_network_no_note():
    assert readiness.endpoint_notes(_region([]), []) == []


def test_bad_cidrs_name_their_source():
    with pytest.raises(ConfigError, match=r"GPU_FLEET_DEPLOYER_CIDRS: cidr: 'nope' is not an IPv4 CIDR"):
        readiness.parse_cidrs("10.0.0.0/8, nope", readiness.DEPLOYER_CIDRS_ENV)
    assert readiness.parse_cidrs("10.0.0.0/8, 192.0.2.1", "x") == _nets("10.0.0.0/8", "192.0.2.1/32")


# --------------------------------------------------------------------------- in the plan


def test_plan_reports_the_secrets_source_and_the_endpoint_note(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(readiness.DEPLOYER_CIDRS_ENV, "198.51.100.0/24")
    code = cli.main(["plan", "us-east", "--format", "json", "--out", str(tmp_path)])
    assert code == cli.EXIT_OK
    (stack,) = json.loads(capsys.readouterr().out)["stacks"]
    assert stack["secrets"] == {"environments": ["gpu-fleet/us-east"],
                                "sources": {k: readiness.ESC_SOURCE for k in SECRETS}, "missing": []}
    assert any(w.startswith("deployer network 198.51.100.0/24 cannot reach") for w in stack["warnings"])


def test_plan_table_warns_about_a_secret_without_source(fleet, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    path = _stack_file(tmp_path, secure=[SECRETS[1]])
    # --deployer-cidr beats the environment variable.
    monkeypatch.setenv(readiness.DEPLOYER_CIDRS_ENV, "not-a-cidr")
    code = cli.main(["plan", "--config", str(path), "--out", str(tmp_path / "out"), "--deployer-cidr", "203.0.113.7"])
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "secrets: stack file (secure)" in out
    assert f"warning: secret {SECRETS[0]} has no source" in out
    assert "cannot reach" not in out


def test_plan_with_a_bad_deployer_cidr_exits_2(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(readiness.DEPLOYER_CIDRS_ENV, "10.0.0.0/33")
    assert cli.main(["plan", "us-east"]) == cli.EXIT_CONFIG
    assert capsys.readouterr().err.strip() == f"{readiness.DEPLOYER_CIDRS_ENV}: cidr: '10.0.0.0/33' is not an IPv4 CIDR"
