"""The GitHub workflows, the shared setup action and its scripts: schema-valid, wired as intended.

Offline: check-jsonschema validates against the schemas bundled in the package
(``--builtin-schema vendor.github-workflows`` / ``vendor.github-actions``), never a URL.
The wiring is asserted on the parsed YAML (PyYAML reads the key ``on`` as boolean ``True``);
the scripts in ``.github/scripts`` run for real, against a stand-in ``pulumi`` executable and a
loopback HTTP server in place of the GitHub API.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO / ".github" / "workflows"
SETUP_ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
SCRIPTS = REPO / ".github" / "scripts"
STACKS = REPO / "stacks"
CI_RUN = REPO / ".ci" / "run"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

#: The README's test command (also the command line of ``.ci/run``).
TEST_COMMAND = "bash scripts/bootstrap.sh && .venv/bin/python -m pytest"

PULUMI_ACTION = "pulumi/actions"
#: The Pulumi CLI every Pulumi job installs: a released version, at least the pulumi SDK
#: pyproject.toml requires (the CLI and the SDK are released together).
PULUMI_CLI_VERSION = "3.272.0"
#: Inputs of ``pulumi/actions`` at v7.0.0 (8e5e406f4007fca908480587cb9893c07090f58d), from its
#: action.yml. A misspelt input (``policy-packs``...) is silently ignored by the runner, so the
#: workflows may only use these names.
PULUMI_ACTION_INPUTS = frozenset({
    "command", "stack-name", "pulumi-version", "pulumi-version-file", "work-dir",
    "comment-on-pr", "comment-on-pr-number", "comment-on-summary", "github-token", "cloud-url",
    "secrets-provider", "parallel", "message", "config-map", "expect-no-changes", "diff",
    "replace", "exclude", "exclude-dependents", "target", "target-dependents", "policyPacks",
    "policyPackConfigs", "refresh", "upsert", "remove", "edit-pr-comment", "color",
    "exclude-protected", "plan", "suppress-outputs", "suppress-progress",
    "always-include-summary", "continue-on-error", "log-verbosity", "log-flow", "debug",
})
#: Inputs of ``pulumi/auth-actions`` (v2.1.0), from its action.yml.
PULUMI_AUTH_INPUTS = frozenset({
    "organization", "requested-token-type", "scope", "token-expiration",
    "export-environment-variables", "cloud-url",
})
POLICY_PACK = "policies"
SETUP_USES = "./.github/actions/setup"

#: Ways a long-lived credential would enter a workflow (static keys, key files, stored tokens).
LONG_LIVED_KEY_PATTERNS = [
    r"AWS_SECRET_ACCESS_KEY", r"AWS_ACCESS_KEY_ID", r"aws-access-key-id", r"aws-secret-access-key",
    r"aws-session-token", r"credentials_json", r"GOOGLE_CREDENTIALS", r"GOOGLE_APPLICATION_CREDENTIALS",
    r"PULUMI_ACCESS_TOKEN",
]
#: Secrets a workflow may read: the run's own GITHUB_TOKEN, and the passphrase of stacks whose
#: secrets provider is ``passphrase`` (self-managed backends without KMS), on Pulumi steps only.
ALLOWED_SECRETS = {"GITHUB_TOKEN", "PULUMI_CONFIG_PASSPHRASE"}
#: Ways a step could read who ran Pulumi last or who runs it now (nothing may depend on it).
IDENTITY_LOOKUPS = [r"get-caller-identity", r"getCallerIdentity", r"get_caller_identity", r"whoami",
                    r"gcloud config get", r"gcloud auth list", r"stack history", r"lastUpdate"]
#: A ref is pinned when it is a full commit SHA or a release tag (v6, v6.1, v6.1.0).
PINNED_REF = re.compile(r"^(?:[0-9a-f]{40}|v\d+(?:\.\d+){0,2})$")


# --------------------------------------------------------------------------- helpers


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a YAML mapping"
    return doc


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS_DIR / name)


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``on:`` block (PyYAML parses the bare key ``on`` as ``True``), as a mapping."""
    on = doc["on"] if "on" in doc else doc[True]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return on


def all_steps(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "runs" in doc:  # an action
        yield from doc["runs"].get("steps", [])
        return
    for job in doc["jobs"].values():
        yield from job.get("steps", [])


def steps_using(steps: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in steps if str(s.get("uses", "")).split("@")[0] == action]


def index_of(steps: list[dict[str, Any]], predicate) -> int:
    for i, step in enumerate(steps):
        if predicate(step):
            return i
    raise AssertionError("no such step")


def is_true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def stack_kinds() -> dict[str, str]:
    """``{stack name: "region" | "global"}`` from the stack files present in ``stacks/``."""
    kinds: dict[str, str] = {}
    for path in sorted(STACKS.glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi."):-len(".yaml")]
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        fleet = config.get("gpu-fleet:fleet") or {}
        kinds[name] = fleet.get("kind") or ("global" if name == "global" else "region")
    return kinds


def stack_clouds() -> dict[str, str]:
    """``{stack name: cloud}``: a region stack's ``cloud``; global stacks use AWS (Route 53)."""
    clouds: dict[str, str] = {}
    for path in sorted(STACKS.glob("Pulumi.*.yaml")):
        name = path.name[len("Pulumi."):-len(".yaml")]
        fleet = ((yaml.safe_load(path.read_text()) or {}).get("config") or {}).get("gpu-fleet:fleet") or {}
        clouds[name] = fleet.get("cloud", "aws") if fleet.get("kind") == "region" else "aws"
    return clouds


def matrix_entries(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job["strategy"]["matrix"]["include"]


def run_check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess:
    assert CHECK_JSONSCHEMA.exists(), f"check-jsonschema is not installed next to {sys.executable}"
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )


# --------------------------------------------------------------------------- schemas


def test_the_expected_workflows_exist():
    names = {p.name for p in workflow_files()}
    assert {"test.yml", "preview.yml", "deploy.yml"} <= names
    assert SETUP_ACTION.exists()


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_matches_the_github_workflow_schema(path: Path):
    result = run_check_jsonschema("vendor.github-workflows", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_setup_action_matches_the_github_action_schema():
    result = run_check_jsonschema("vendor.github-actions", SETUP_ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path):
    broken = tmp_path / "broken.yml"
    # A job without runs-on, and a step that is neither `run` nor `uses`.
    broken.write_text(
        "name: broken\n"
        "on: pull_request\n"
        "jobs:\n"
        "  preview:\n"
        "    steps:\n"
        "      - name: nothing to do\n"
        "        with: {command: preview}\n"
    )
    result = run_check_jsonschema("vendor.github-workflows", broken)
    assert result.returncode != 0, result.stdout
    assert "broken.yml" in result.stdout + result.stderr


def test_schema_check_rejects_a_broken_composite_action(tmp_path: Path):
    broken = tmp_path / "action.yml"
    # Composite `run` steps must declare their shell.
    broken.write_text(
        "name: broken\n"
        "description: no shell on a run step\n"
        "runs:\n"
        "  using: composite\n"
        "  steps:\n"
        "    - run: echo hi\n"
    )
    result = run_check_jsonschema("vendor.github-actions", broken)
    assert result.returncode != 0, result.stdout


# --------------------------------------------------------------------------- every file


@pytest.mark.parametrize("path", [*workflow_files(), SETUP_ACTION], ids=lambda p: p.name)
def test_every_action_is_pinned(path: Path):
    for step in all_steps(load(path)):
        uses = step.get("uses")
        if not uses or uses.startswith("./"):
            continue
        assert "@" in uses, f"{path.name}: {uses} is not pinned"
        ref = uses.rsplit("@", 1)[1]
        assert ref not in {"main", "master", "HEAD", "latest"}, f"{path.name}: {uses} follows a branch"
        assert PINNED_REF.match(ref), f"{path.name}: {uses} is not pinned to a SHA or release tag"


@pytest.mark.parametrize("path", [*workflow_files(), SETUP_ACTION], ids=lambda p: p.name)
def test_no_long_lived_credentials(path: Path):
    text = path.read_text()
    for pattern in LONG_LIVED_KEY_PATTERNS:
        assert not re.search(pattern, text), f"{path.name} mentions {pattern}"
    secrets = set(re.findall(r"secrets\.([A-Za-z0-9_]+)", text))
    assert secrets <= ALLOWED_SECRETS, f"{path.name} reads secrets {secrets - ALLOWED_SECRETS}"
    # The passphrase reaches Pulumi steps only, from the secret, never a literal.
    for step in all_steps(load(path)):
        env = step.get("env") or {}
        if "PULUMI_CONFIG_PASSPHRASE" in env:
            assert str(step.get("uses", "")).startswith(PULUMI_ACTION + "@"), step.get("name")
            assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
        else:
            assert "PULUMI_CONFIG_PASSPHRASE" not in json.dumps(step), step.get("name")


@pytest.mark.parametrize("path", [*workflow_files(), SETUP_ACTION, *sorted(SCRIPTS.glob("*.py"))],
                         ids=lambda p: p.name)
def test_nothing_depends_on_who_ran_pulumi(path: Path):
    """Every identity is a fixed repository variable; no step looks up a caller or a last update."""
    text = path.read_text()
    for pattern in IDENTITY_LOOKUPS:
        assert not re.search(pattern, text, re.IGNORECASE), f"{path.name} mentions {pattern}"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_workflow_permissions_are_explicit(path: Path):
    doc = load(path)
    assert "permissions" in doc, f"{path.name} must declare its token permissions"
    assert doc["permissions"].get("contents") == "read"
    for job in doc["jobs"].values():
        for scope, level in (job.get("permissions") or {}).items():
            assert level != "write" or scope in {"id-token", "pull-requests"}, (path.name, scope)


# --------------------------------------------------------------------------- test.yml


def ci_run_command_lines() -> list[str]:
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#") and "pytest" in line]


def test_test_workflow_runs_the_readme_test_command():
    doc = workflow("test.yml")
    on = triggers(doc)
    assert "pull_request" in on
    assert "main" in (on.get("push") or {}).get("branches", [])
    assert doc["permissions"] == {"contents": "read"}
    (job,) = doc["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    steps = job["steps"]
    (setup_python,) = steps_using(steps, "actions/setup-python")
    assert str(setup_python["with"]["python-version"]) == "3.11"
    runs = [str(s.get("run", "")).strip() for s in steps]
    assert any(TEST_COMMAND in run for run in runs), runs
    assert index_of(steps, lambda s: "setup-python" in str(s.get("uses", ""))) < index_of(
        steps, lambda s: TEST_COMMAND in str(s.get("run", "")))


def test_test_workflow_runs_the_same_command_as_ci_run():
    assert CI_RUN.exists()
    commands = ci_run_command_lines()
    assert commands, ".ci/run runs no pytest command"
    assert TEST_COMMAND in commands, commands
    runs = "\n".join(str(s.get("run", "")) for s in all_steps(workflow("test.yml")))
    for command in commands:
        assert command in runs, f"test.yml does not run {command!r} from .ci/run"


# --------------------------------------------------------------------------- setup action


def _step(steps: list[dict[str, Any]], action: str) -> dict[str, Any]:
    (step,) = steps_using(steps, action)
    return step


def test_setup_action_creates_the_venv_with_a_pip_cache_and_no_checkov():
    action = load(SETUP_ACTION)
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    # The venv comes from the same script the tests use (project + dev extra + promtool).
    runs = [str(s.get("run", "")).strip() for s in steps]
    assert "bash scripts/bootstrap.sh" in runs, runs
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"-m venv \.venv", bootstrap)
    assert re.search(r"\.venv/bin/python -m pip install .*-e", bootstrap)
    python = _step(steps, "actions/setup-python")
    assert python["with"]["cache"] == "pip"
    assert python["with"]["cache-dependency-path"] == "pyproject.toml"
    assert index_of(steps, lambda s: s is python) < index_of(
        steps, lambda s: s.get("run", "").strip() == "bash scripts/bootstrap.sh")
    bootstrap_step = next(s for s in steps if s.get("run", "").strip() == "bash scripts/bootstrap.sh")
    assert bootstrap_step["env"] == {"GPU_FLEET_SKIP_CHECKOV": "1"}
    assert 'GPU_FLEET_SKIP_CHECKOV:-0}" != 1' in bootstrap


def test_setup_action_gets_only_the_credentials_the_decision_step_names():
    action = load(SETUP_ACTION)
    steps = action["runs"]["steps"]
    inputs = action["inputs"]
    decide = next(s for s in steps if s.get("id") == "creds")
    assert decide["run"].strip() == "python .github/scripts/credentials.py"
    assert decide["env"]["STACK_CLOUD"] == "${{ inputs.stack-cloud }}"
    assert decide["env"]["BACKEND_URL"] == "${{ inputs.backend-url }}"

    aws = _step(steps, "aws-actions/configure-aws-credentials")
    assert aws["if"] == "steps.creds.outputs.aws-role-arn != ''"
    assert aws["with"]["role-to-assume"] == "${{ steps.creds.outputs.aws-role-arn }}"
    assert aws["with"]["aws-region"] == "${{ inputs.aws-region }}"
    gcp = _step(steps, "google-github-actions/auth")
    assert gcp["if"] == "steps.creds.outputs.gcp-service-account != ''"
    assert gcp["with"]["service_account"] == "${{ steps.creds.outputs.gcp-service-account }}"
    assert gcp["with"]["workload_identity_provider"] == "${{ inputs.gcp-workload-identity-provider }}"
    pulumi_auth = _step(steps, "pulumi/auth-actions")
    assert pulumi_auth["if"] == "steps.creds.outputs.pulumi-cloud == 'true'"
    assert set(pulumi_auth["with"]) <= PULUMI_AUTH_INPUTS
    assert pulumi_auth["with"]["organization"] == "${{ inputs.pulumi-organization }}"
    assert pulumi_auth["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:organization"
    assert pulumi_auth["with"]["cloud-url"] == "${{ inputs.backend-url }}"
    # The decision comes before every credential step.
    for step in (aws, gcp, pulumi_auth):
        assert index_of(steps, lambda s: s is decide) < index_of(steps, lambda s, t=step: s is t)

    assert inputs["stack-cloud"]["required"] is True
    assert inputs["pulumi-version"]["required"] is True
    assert inputs["aws-region"]["default"] == "us-east-1"
    # Every input the steps read is declared (composite actions cannot read undeclared inputs).
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", SETUP_ACTION.read_text()))
    assert used <= set(inputs), used - set(inputs)


def test_setup_action_installs_the_kubernetes_auth_tools_per_cloud():
    steps = load(SETUP_ACTION)["runs"]["steps"]
    gcloud = _step(steps, "google-github-actions/setup-gcloud")
    assert gcloud["if"] == "inputs.stack-cloud == 'gcp'"
    assert gcloud["with"]["install_components"] == "gke-gcloud-auth-plugin"
    # The plugin and the AWS CLI are what the exported kubeconfigs execute.
    from gpu_fleet.components import aws_cluster, gke_cluster
    assert gke_cluster.AUTH_PLUGIN == gcloud["with"]["install_components"]
    aws_cli = next(s for s in steps if "awscli" in str(s.get("run", "")))
    assert aws_cli["if"] == "inputs.stack-cloud == 'aws'"
    assert f"command -v {aws_cluster.AUTH_COMMAND}" in aws_cli["run"]
    assert index_of(steps, lambda s: s is gcloud) > index_of(
        steps, lambda s: str(s.get("uses", "")).startswith("google-github-actions/auth@"))


def test_setup_action_installs_the_pinned_pulumi_cli_and_logs_in():
    steps = load(SETUP_ACTION)["runs"]["steps"]
    (install,) = steps_using(steps, PULUMI_ACTION)
    # Install-only mode: no command (pulumi/actions@v7.0.0 src/config.ts makeInstallationConfig).
    assert install["with"] == {"pulumi-version": "${{ inputs.pulumi-version }}"}
    login = next(s for s in steps if "pulumi login" in str(s.get("run", "")))
    assert login["env"] == {"BACKEND_URL": "${{ inputs.backend-url }}"}
    assert index_of(steps, lambda s: s is install) < index_of(steps, lambda s: s is login)
    assert index_of(steps, lambda s: "auth-actions" in str(s.get("uses", ""))) < index_of(
        steps, lambda s: s is login)


# --------------------------------------------------------------------------- credentials.py

CREDENTIALS = SCRIPTS / "credentials.py"
IDENTITIES = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/stack", "GCP_SERVICE_ACCOUNT": "stack@p.iam",
              "AWS_STATE_ROLE_ARN": "arn:aws:iam::123456789012:role/state", "GCP_STATE_SERVICE_ACCOUNT": "state@p.iam"}


def run_credentials(tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run([sys.executable, str(CREDENTIALS)], capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **env})
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result.returncode, outputs, result.stdout


@pytest.mark.parametrize("cloud,backend,aws,gcp,pulumi_cloud", [
    # Pulumi Cloud (default or self-hosted): the stack's own cloud only.
    ("aws", "", "role/stack", "", "true"),
    ("gcp", "", "", "stack@p.iam", "true"),
    ("gcp", "https://api.pulumi.example.com", "", "stack@p.iam", "true"),
    # State in the stack's own cloud: still one identity (it must reach the bucket).
    ("aws", "s3://state?region=us-east-1", "role/stack", "", "false"),
    ("gcp", "gs://state", "", "stack@p.iam", "false"),
    # State in the other cloud: that cloud's state-only identity, never its stack identity.
    ("gcp", "s3://state?region=us-east-1", "role/state", "stack@p.iam", "false"),
    ("aws", "gs://state", "role/stack", "state@p.iam", "false"),
])
def test_each_job_gets_only_its_clouds_credentials(tmp_path, cloud, backend, aws, gcp, pulumi_cloud):
    code, out, _ = run_credentials(tmp_path, STACK_CLOUD=cloud, BACKEND_URL=backend, **IDENTITIES)
    assert code == 0
    assert out["aws-role-arn"].endswith(aws) and bool(out["aws-role-arn"]) == bool(aws)
    assert out["gcp-service-account"] == (IDENTITIES["GCP_SERVICE_ACCOUNT"] if gcp == "stack@p.iam" else
                                          IDENTITIES["GCP_STATE_SERVICE_ACCOUNT"] if gcp else "")
    assert out["pulumi-cloud"] == pulumi_cloud


@pytest.mark.parametrize("env,message", [
    ({"STACK_CLOUD": "gcp", "BACKEND_URL": "s3://state", "GCP_SERVICE_ACCOUNT": "s@p"}, "AWS_STATE_ROLE_ARN is not set"),
    ({"STACK_CLOUD": "aws", "BACKEND_URL": ""}, "AWS_PREVIEW_ROLE_ARN / AWS_DEPLOY_ROLE_ARN is not set"),
    ({"STACK_CLOUD": "aws", "BACKEND_URL": "azblob://x", "AWS_ROLE_ARN": "r"}, "PULUMI_BACKEND_URL 'azblob://x'"),
    ({"STACK_CLOUD": "azure"}, "STACK_CLOUD must be aws or gcp"),
])
def test_missing_identities_fail_with_the_variable_to_set(tmp_path, env, message):
    code, out, stdout = run_credentials(tmp_path, **env)
    assert code == 1 and out == {}
    assert stdout.startswith("::error::") and message in stdout


# --------------------------------------------------------------------------- preview / deploy


def pulumi_job_steps(job: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    steps = job["steps"]
    (pulumi,) = steps_using(steps, PULUMI_ACTION)
    assert set(pulumi["with"]) <= PULUMI_ACTION_INPUTS, set(pulumi["with"]) - PULUMI_ACTION_INPUTS
    return steps, pulumi


def assert_setup_then_plan_then_pulumi(steps: list[dict[str, Any]], stack_expr: str) -> dict[str, Any]:
    checkout = index_of(steps, lambda s: str(s.get("uses", "")).startswith("actions/checkout@"))
    setup = index_of(steps, lambda s: s.get("uses") == SETUP_USES)
    plan = index_of(steps, lambda s: f".venv/bin/gpu-fleet plan {stack_expr}" in str(s.get("run", "")))
    pulumi = index_of(steps, lambda s: str(s.get("uses", "")).startswith(PULUMI_ACTION + "@"))
    assert checkout < setup < plan < pulumi
    return steps[setup]


def policy_packs(pulumi: dict[str, Any]) -> list[str]:
    return [p.strip() for p in re.split(r"[\n,]", str(pulumi["with"].get("policyPacks", ""))) if p.strip()]


def assert_pinned_cli_and_backend(doc: dict[str, Any], pulumi: dict[str, Any], setup: dict[str, Any]) -> None:
    assert doc["env"]["PULUMI_VERSION"] == PULUMI_CLI_VERSION
    assert pulumi["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}"
    assert setup["with"]["pulumi-version"] == "${{ env.PULUMI_VERSION }}"
    assert pulumi["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert setup["with"]["backend-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert setup["with"]["pulumi-organization"] == "${{ vars.PULUMI_ORG }}"
    assert pulumi["with"]["stack-name"].startswith("${{ vars.PULUMI_ORG }}/")
    assert pulumi["env"] == {"PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}
    # Stacks are created by hand with their secrets provider; CI never creates one (a misspelt
    # name must fail). `secrets-provider` only applies to creation (pulumi/actions@v7.0.0 src/main.ts).
    assert "upsert" not in pulumi["with"] and "secrets-provider" not in pulumi["with"]


def assert_stack_identities(setup: dict[str, Any], role: str, cloud_expr: str) -> None:
    """The job's stack cloud, and its identities from fixed repository variables only."""
    args = setup["with"]
    assert args["stack-cloud"] == cloud_expr
    assert args["aws-role-arn"] == f"${{{{ vars.AWS_{role}_ROLE_ARN }}}}"
    if "gcp-service-account" in args:
        assert args["gcp-service-account"] == f"${{{{ vars.GCP_{role}_SERVICE_ACCOUNT }}}}"
    for key, value in args.items():
        assert "secrets." not in value and "github.actor" not in value and "github.triggering_actor" not in value, key


def test_the_matrices_follow_the_stack_files_and_their_clouds():
    clouds = stack_clouds()
    assert set(clouds) >= {"us-east", "eu-west", "global"}
    preview = workflow("preview.yml")["jobs"]["preview"]
    assert {e["stack"]: e["cloud"] for e in matrix_entries(preview)} == clouds
    deploy = workflow("deploy.yml")["jobs"]
    regions = {name: cloud for name, cloud in clouds.items() if stack_kinds()[name] == "region"}
    assert {e["stack"]: e["cloud"] for e in matrix_entries(deploy["regions"])} == regions
    assert stack_clouds()["eu-west"] == "gcp"  # the matrix is not all-AWS by accident


def test_preview_runs_on_pull_requests_for_every_stack():
    doc = workflow("preview.yml")
    assert "pull_request" in triggers(doc)
    (job,) = doc["jobs"].values()
    assert job["strategy"]["fail-fast"] is False
    assert job["runs-on"] == "${{ fromJSON(vars.PULUMI_RUNNERS || '{}')[matrix.stack] || 'ubuntu-latest' }}"


def test_preview_runs_pulumi_preview_with_policies_and_pr_comment():
    doc = workflow("preview.yml")
    (job,) = doc["jobs"].values()
    steps, pulumi = pulumi_job_steps(job)
    args = pulumi["with"]
    assert args["command"] == "preview"
    assert args["stack-name"] == "${{ vars.PULUMI_ORG }}/${{ matrix.stack }}"
    assert args["work-dir"] in {".", "./"}
    assert policy_packs(pulumi) == [POLICY_PACK]
    assert (REPO / POLICY_PACK).is_dir()
    assert is_true(args["comment-on-pr"]) and is_true(args["edit-pr-comment"])
    assert args["github-token"] == "${{ secrets.GITHUB_TOKEN }}"

    setup = assert_setup_then_plan_then_pulumi(steps, "${{ matrix.stack }}")
    assert_pinned_cli_and_backend(doc, pulumi, setup)
    assert_stack_identities(setup, "PREVIEW", "${{ matrix.cloud }}")
    assert setup["with"]["aws-state-role-arn"] == "${{ vars.AWS_STATE_ROLE_ARN }}"
    assert setup["with"]["gcp-state-service-account"] == "${{ vars.GCP_STATE_SERVICE_ACCOUNT }}"
    plan = next(s for s in steps if ".venv/bin/gpu-fleet plan ${{ matrix.stack }}" in str(s.get("run", "")))
    assert plan["env"]["GPU_FLEET_DEPLOYER_CIDRS"] == "${{ fromJSON(vars.PULUMI_RUNNER_CIDRS || '{}')[matrix.stack] }}"
    from gpu_fleet.readiness import DEPLOYER_CIDRS_ENV
    assert DEPLOYER_CIDRS_ENV in plan["env"]


def test_preview_puts_the_cost_change_into_the_comment():
    doc = workflow("preview.yml")
    (job,) = doc["jobs"].values()
    steps = job["steps"]
    (head, base) = steps_using(steps, "actions/checkout")
    assert base["with"] == {"ref": "${{ github.event.pull_request.base.sha }}", "path": ".base",
                            "persist-credentials": False}
    head_plan = next(s for s in steps if '--format json > "$RUNNER_TEMP/head.json"' in str(s.get("run", "")))
    base_plan = next(s for s in steps if "$RUNNER_TEMP/base.json" in str(s.get("run", "")) and s is not head_plan
                     and "cost-diff" not in s["run"])
    assert 'PYTHONPATH="$PWD"' in base_plan["run"] and "cd .base" in base_plan["run"]
    assert "|| echo" in base_plan["run"]  # a failing base plan becomes n/a, not a red job
    cost = next(s for s in steps if "gpu-fleet cost-diff" in str(s.get("run", "")))
    assert '"$RUNNER_TEMP/base.json" "$RUNNER_TEMP/head.json"' in cost["run"]
    assert "--stack ${{ matrix.stack }}" in cost["run"]
    comment = next(s for s in steps if "pr_comment.py" in str(s.get("run", "")))
    assert comment["if"] == "${{ !cancelled() }}"
    assert comment["env"]["STACK_NAME"] == "${{ vars.PULUMI_ORG }}/${{ matrix.stack }}"
    assert comment["env"]["PREVIEW_OUTCOME"] == "${{ steps.preview.outcome }}"
    order = [index_of(steps, lambda s, t=t: s is t) for t in (head_plan, base_plan, cost, comment)]
    assert order == sorted(order)
    assert index_of(steps, lambda s: s.get("id") == "preview") < order[-1]


def test_preview_of_global_waits_for_the_region_stacks():
    (job,) = workflow("preview.yml")["jobs"].values()
    steps = job["steps"]
    ready = next(s for s in steps if s.get("id") == "ready")
    assert ready["if"] == "matrix.stack == 'global'"
    assert ready["run"] == ".venv/bin/python .github/scripts/region_stacks_ready.py stacks/Pulumi.global.yaml"
    preview = next(s for s in steps if s.get("id") == "preview")
    assert preview["if"] == "matrix.stack != 'global' || steps.ready.outputs.ready == 'true'"


def test_preview_uses_oidc_and_cancels_superseded_runs():
    doc = workflow("preview.yml")
    assert doc["permissions"] == {"id-token": "write", "contents": "read", "pull-requests": "write"}
    concurrency = doc["concurrency"]
    assert concurrency["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in concurrency["group"]
    assert "matrix" not in concurrency["group"]  # workflow level: one group per PR
    # Fork PRs get no OIDC token: the job is limited to branches of this repository.
    (job,) = doc["jobs"].values()
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]


def test_deploy_runs_regions_then_global_behind_environments():
    doc = workflow("deploy.yml")
    on = triggers(doc)
    assert "main" in (on.get("push") or {}).get("branches", [])
    assert on["workflow_dispatch"]["inputs"]["runners"]["type"] == "string"
    assert "pull_request" not in on and "pull_request_target" not in on

    kinds = stack_kinds()
    globals_ = [name for name, kind in kinds.items() if kind == "global"]
    assert globals_ == ["global"]

    jobs = doc["jobs"]
    assert set(jobs) == {"regions", "global"}
    region_job, global_job = jobs["regions"], jobs["global"]
    assert region_job["strategy"]["fail-fast"] is False  # never abort a running `up`
    assert region_job["environment"] == "${{ matrix.stack }}"
    assert global_job["environment"] == "global"
    needs = global_job["needs"]
    assert (needs if isinstance(needs, list) else [needs]) == ["regions"]
    assert "needs" not in region_job
    runners = "fromJSON(inputs.runners || vars.PULUMI_RUNNERS || '{}')"
    assert region_job["runs-on"] == f"${{{{ {runners}[matrix.stack] || 'ubuntu-latest' }}}}"
    assert global_job["runs-on"] == f"${{{{ {runners}['global'] || 'ubuntu-latest' }}}}"

    for job, stack_expr, cloud in ((region_job, "${{ matrix.stack }}", "${{ matrix.cloud }}"),
                                   (global_job, "global", "aws")):
        steps, pulumi = pulumi_job_steps(job)
        assert pulumi["with"]["command"] == "up"
        assert pulumi["with"]["stack-name"] == "${{ vars.PULUMI_ORG }}/" + stack_expr
        assert policy_packs(pulumi) == [POLICY_PACK]
        setup = assert_setup_then_plan_then_pulumi(steps, stack_expr)
        assert_pinned_cli_and_backend(doc, pulumi, setup)
        assert_stack_identities(setup, "DEPLOY", cloud)
    # The global stack (Route 53) never gets a GCP deploy identity.
    assert "gcp-service-account" not in global_job["steps"][1]["with"]


def test_deploy_is_least_privilege_and_never_cancels():
    doc = workflow("deploy.yml")
    assert doc["permissions"] == {"id-token": "write", "contents": "read"}
    assert doc["concurrency"] == {"group": "deploy", "cancel-in-progress": False}


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_pulumi_workflows_share_the_setup_action(name: str):
    doc = workflow(name)
    for job_name, job in doc["jobs"].items():
        steps = job["steps"]
        assert len([s for s in steps if s.get("uses") == SETUP_USES]) == 1, job_name
        # Credentials come from the shared action only: no per-job copies.
        for action in ("aws-actions/configure-aws-credentials", "google-github-actions/auth",
                       "google-github-actions/setup-gcloud", "pulumi/auth-actions", "actions/setup-python"):
            assert not steps_using(steps, action), f"{name}:{job_name} repeats {action}"


def test_setup_builds_the_policy_packs_virtualenv():
    """``pulumi preview --policy-pack policies`` runs the pack from ``policies/.venv``."""
    pack = yaml.safe_load((REPO / POLICY_PACK / "PulumiPolicy.yaml").read_text())
    venv = pack["runtime"]["options"]["virtualenv"]
    steps = yaml.safe_load(SETUP_ACTION.read_text())["runs"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert f"python -m venv {POLICY_PACK}/{venv}" in runs
    assert f"{POLICY_PACK}/{venv}/bin/python -m pip install -q -r {POLICY_PACK}/requirements.txt" in runs


# --------------------------------------------------------------------------- region_stacks_ready.py

FAKE_PULUMI = """#!/bin/sh
# Stand-in for `pulumi stack output --stack NAME --json --non-interactive`: exits as listed in $FAKE_STACKS
# ("name=code" words); unknown stacks exist.
for entry in $FAKE_STACKS; do
  if [ "${entry%=*}" = "$4" ]; then
    code="${entry#*=}"
    if [ "$code" = 6 ] || [ "$code" = 1 ]; then echo "error: no stack named '$4' found" >&2; else echo "error: 401 unauthorized" >&2; fi
    exit "$code"
  fi
done
echo '{}'
"""


def run_ready(tmp_path: Path, stacks: str) -> tuple[int, str, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "pulumi"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(0o755)
    output, status = tmp_path / "output", tmp_path / "status.md"
    output.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STACKS": stacks,
           "GITHUB_OUTPUT": str(output), "STATUS_FILE": str(status)}
    result = subprocess.run([sys.executable, str(SCRIPTS / "region_stacks_ready.py"), str(STACKS / "Pulumi.global.yaml")],
                            capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
    return result.returncode, output.read_text(), status.read_text() if status.exists() else "", result.stdout


def test_global_preview_runs_when_the_region_stacks_exist(tmp_path):
    code, output, status, _ = run_ready(tmp_path, "")
    assert (code, output, status) == (0, "ready=true\n", "")


@pytest.mark.parametrize("exit_code", [6, 1])  # 6: ExitStackNotFound; 1 + message: older CLIs
def test_missing_region_stacks_skip_the_global_preview_with_a_notice(tmp_path, exit_code):
    from gpu_fleet.components.config import load_stack_file
    from gpu_fleet.components.global_routing import stack_reference_name
    cfg = load_stack_file(STACKS / "Pulumi.global.yaml")
    missing = stack_reference_name(cfg.organization, cfg.regions[-1])
    code, output, status, stdout = run_ready(tmp_path, f"{missing}={exit_code}")
    assert code == 0 and output == "ready=false\n"
    assert missing in status and "do not exist yet" in status
    assert stdout.startswith("::notice::")


def test_other_backend_errors_still_fail(tmp_path):
    from gpu_fleet.components.config import load_stack_file
    from gpu_fleet.components.global_routing import stack_reference_name
    cfg = load_stack_file(STACKS / "Pulumi.global.yaml")
    code, output, _, stdout = run_ready(tmp_path, f"{stack_reference_name(cfg.organization, cfg.regions[0])}=3")
    assert code == 1 and output == ""
    assert stdout.startswith("::error::") and "401 unauthorized" in stdout


# --------------------------------------------------------------------------- pr_comment.py


class FakeGitHub(http.server.BaseHTTPRequestHandler):
    """Issue comments of PR 7 in acme/fleet, kept in ``server.comments``."""

    def _reply(self, code: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.calls.append(("GET", self.path, self.headers["Authorization"]))
        page = int(re.search(r"[?&]page=(\d+)", self.path).group(1))
        self._reply(200, self.server.comments[(page - 1) * 100: page * 100])

    def do_PATCH(self):  # noqa: N802
        comment_id = int(self.path.rsplit("/", 1)[1])
        body = self._json()["body"]
        self.server.calls.append(("PATCH", self.path, body))
        next(c for c in self.server.comments if c["id"] == comment_id)["body"] = body
        self._reply(200, {})

    def do_POST(self):  # noqa: N802
        body = self._json()["body"]
        self.server.calls.append(("POST", self.path, body))
        self.server.comments.append({"id": 1000 + len(self.server.comments), "body": body})
        self._reply(201, {})

    def log_message(self, *args):
        pass


@pytest.fixture
def github():
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeGitHub)
    server.comments, server.calls = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_comment(github, tmp_path: Path, cost: str, status: str = "", outcome: str = "success") -> None:
    (tmp_path / "cost.md").write_text(cost)
    (tmp_path / "status.md").write_text(status)
    env = {**os.environ, "GITHUB_API_URL": f"http://127.0.0.1:{github.server_port}", "GITHUB_REPOSITORY": "acme/fleet",
           "PR_NUMBER": "7", "GITHUB_TOKEN": "t0ken", "PREVIEW_OUTCOME": outcome}
    result = subprocess.run([sys.executable, str(SCRIPTS / "pr_comment.py"), "acme/us-east", str(tmp_path / "cost.md"),
                             str(tmp_path / "status.md")], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr


#: What pulumi/actions@v7.0.0 (src/libs/pr.ts) posts for `preview` on project gpu-fleet, stack acme/us-east.
PULUMI_COMMENT = ("#### :tropical_drink: `preview` on gpu-fleet/acme/us-east\n\n<details>\n"
                  "<summary>Pulumi report</summary>\n<pre>\n+ 3 to create\n</pre>\n</details>")


def test_cost_joins_the_actions_preview_comment_and_replaces_itself(github, tmp_path):
    other = {"id": 1, "body": "#### :tropical_drink: `preview` on gpu-fleet/acme/eu-west\n<summary>Pulumi report</summary>"}
    github.comments += [{"id": 9, "body": "LGTM"}] * 120 + [other, {"id": 2, "body": PULUMI_COMMENT}]
    run_comment(github, tmp_path, "#### Cost per hour\n| us-east | 1 |")
    ((method, path, body),) = [c for c in github.calls if c[0] != "GET"]
    assert (method, path) == ("PATCH", "/repos/acme/fleet/issues/comments/2")
    assert body.startswith(PULUMI_COMMENT) and body.rstrip().endswith("| us-east | 1 |")
    assert [c[2] for c in github.calls if c[0] == "GET"] == ["Bearer t0ken", "Bearer t0ken"]  # two pages read
    # The next push: the action rewrites its report; a re-run replaces our section, never stacks it.
    run_comment(github, tmp_path, "#### Cost per hour\n| us-east | 2 |")
    body = github.comments[-1]["body"]
    assert body.count("Cost per hour") == 1 and "| us-east | 2 |" in body and "| us-east | 1 |" not in body
    assert other["body"].endswith("Pulumi report</summary>")  # another stack's comment is left alone


def test_without_a_preview_comment_one_is_created_the_action_will_edit(github, tmp_path):
    run_comment(github, tmp_path, "#### Cost per hour", status="Preview skipped: region stacks missing",
                outcome="skipped")
    ((method, path, body),) = [c for c in github.calls if c[0] != "GET"]
    assert (method, path) == ("POST", "/repos/acme/fleet/issues/7/comments")
    # pulumi/actions finds a comment to edit by this heading and its summary line.
    assert body.startswith("#### :tropical_drink: `preview` on gpu-fleet/acme/us-east")
    assert "<summary>Pulumi report</summary>" in body
    assert body.index("Preview skipped") < body.index("Cost per hour")


def test_a_failed_preview_is_said_above_the_cost(github, tmp_path):
    github.comments.append({"id": 2, "body": PULUMI_COMMENT})
    run_comment(github, tmp_path, "#### Cost per hour", outcome="failure")
    body = github.comments[-1]["body"]
    assert "The preview failed in this run" in body
    assert body.index("failed in this run") < body.index("Cost per hour")


def test_an_oversized_report_is_trimmed_and_the_cost_kept():
    import importlib.util
    spec = importlib.util.spec_from_file_location("pr_comment", SCRIPTS / "pr_comment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    head = module.heading("gpu-fleet", "acme/us-east")
    report = PULUMI_COMMENT + "\n" + "x" * 80_000
    body = module.compose(report, head, "#### Cost per hour\n| us-east | 1 |", "")
    assert len(body) <= 65_536 and body.startswith(head)
    assert body.rstrip().endswith("| us-east | 1 |") and "(report trimmed)" in body
