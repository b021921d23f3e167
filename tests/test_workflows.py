"""The GitHub workflows and the shared setup action: schema-valid, and wired as intended.

Offline: check-jsonschema validates against the schemas bundled in the package
(``--builtin-schema vendor.github-workflows`` / ``vendor.github-actions``), never a URL.
The wiring is asserted on the parsed YAML (PyYAML reads the key ``on`` as boolean ``True``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS_DIR = REPO / ".github" / "workflows"
SETUP_ACTION = REPO / ".github" / "actions" / "setup" / "action.yml"
STACKS = REPO / "stacks"
CI_RUN = REPO / ".ci" / "run"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

#: The README's test command (also the command line of ``.ci/run``).
TEST_COMMAND = "bash scripts/bootstrap.sh && .venv/bin/python -m pytest"

PULUMI_ACTION = "pulumi/actions"
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
    r"PULUMI_ACCESS_TOKEN", r"PULUMI_CONFIG_PASSPHRASE",
]
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
    # The only secret any file may read is the run's own, short-lived GITHUB_TOKEN.
    secrets = set(re.findall(r"secrets\.([A-Za-z0-9_]+)", text))
    assert secrets <= {"GITHUB_TOKEN"}, f"{path.name} reads secrets {secrets - {'GITHUB_TOKEN'}}"


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


def test_setup_action_creates_the_venv_and_gets_oidc_credentials():
    action = load(SETUP_ACTION)
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    inputs = action["inputs"]

    # The venv comes from the same script the tests use (project + dev extra + promtool).
    runs = [str(s.get("run", "")).strip() for s in steps]
    assert "bash scripts/bootstrap.sh" in runs, runs
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r"-m venv \.venv", bootstrap)
    assert re.search(r"\.venv/bin/python -m pip install .*-e", bootstrap)
    assert index_of(steps, lambda s: "setup-python" in str(s.get("uses", ""))) < index_of(
        steps, lambda s: s.get("run", "").strip() == "bash scripts/bootstrap.sh")

    (aws,) = steps_using(steps, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ inputs.aws-role-arn }}"
    assert aws["with"]["aws-region"] == "${{ inputs.aws-region }}"
    assert inputs["aws-region"]["default"] == "us-east-1"

    (gcp,) = steps_using(steps, "google-github-actions/auth")
    assert gcp["with"]["workload_identity_provider"] == "${{ inputs.gcp-workload-identity-provider }}"
    assert gcp["with"]["service_account"] == "${{ inputs.gcp-service-account }}"

    (pulumi_auth,) = steps_using(steps, "pulumi/auth-actions")
    assert set(pulumi_auth["with"]) <= PULUMI_AUTH_INPUTS
    assert pulumi_auth["with"]["organization"] == "${{ inputs.pulumi-organization }}"
    assert pulumi_auth["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:organization"

    for name in ("aws-role-arn", "gcp-workload-identity-provider", "gcp-service-account",
                 "pulumi-organization"):
        assert inputs[name]["required"] is True, name
    # Every input the steps read is declared (composite actions cannot read undeclared inputs).
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", SETUP_ACTION.read_text()))
    assert used <= set(inputs), used - set(inputs)


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


def test_preview_runs_on_pull_requests_for_every_stack():
    doc = workflow("preview.yml")
    assert "pull_request" in triggers(doc)
    (job,) = doc["jobs"].values()
    strategy = job["strategy"]
    assert strategy["fail-fast"] is False
    assert sorted(strategy["matrix"]["stack"]) == sorted(stack_kinds()), "matrix != stacks/ files"
    assert set(stack_kinds()) >= {"us-east", "eu-west", "global"}


def test_preview_runs_pulumi_preview_with_policies_and_pr_comment():
    doc = workflow("preview.yml")
    (job,) = doc["jobs"].values()
    steps, pulumi = pulumi_job_steps(job)
    ref = pulumi["uses"].split("@", 1)[1]
    assert PINNED_REF.match(ref)
    args = pulumi["with"]
    assert args["command"] == "preview"
    assert args["stack-name"] == "${{ vars.PULUMI_ORG }}/${{ matrix.stack }}"
    assert args["work-dir"] in {".", "./"}
    assert policy_packs(pulumi) == [POLICY_PACK]
    assert (REPO / POLICY_PACK).is_dir()
    assert is_true(args["comment-on-pr"])
    assert args["github-token"] == "${{ secrets.GITHUB_TOKEN }}"

    setup = assert_setup_then_plan_then_pulumi(steps, "${{ matrix.stack }}")
    assert setup["with"]["aws-role-arn"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert setup["with"]["aws-region"] == "us-east-1"
    assert setup["with"]["gcp-workload-identity-provider"] == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
    assert setup["with"]["gcp-service-account"] == "${{ vars.GCP_PREVIEW_SERVICE_ACCOUNT }}"
    assert setup["with"]["pulumi-organization"] == "${{ vars.PULUMI_ORG }}"


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
    assert "workflow_dispatch" in on
    assert "pull_request" not in on and "pull_request_target" not in on

    kinds = stack_kinds()
    regions = sorted(name for name, kind in kinds.items() if kind != "global")
    globals_ = [name for name, kind in kinds.items() if kind == "global"]
    assert globals_ == ["global"]

    jobs = doc["jobs"]
    assert set(jobs) == {"regions", "global"}
    region_job, global_job = jobs["regions"], jobs["global"]
    assert region_job["strategy"]["fail-fast"] is False  # never abort a running `up`
    assert sorted(region_job["strategy"]["matrix"]["stack"]) == regions
    assert region_job["environment"] == "${{ matrix.stack }}"
    assert global_job["environment"] == "global"
    needs = global_job["needs"]
    assert (needs if isinstance(needs, list) else [needs]) == ["regions"]
    assert "needs" not in region_job

    for job, stack_expr in ((region_job, "${{ matrix.stack }}"), (global_job, "global")):
        steps, pulumi = pulumi_job_steps(job)
        assert pulumi["with"]["command"] == "up"
        assert pulumi["with"]["stack-name"] == "${{ vars.PULUMI_ORG }}/" + stack_expr
        assert policy_packs(pulumi) == [POLICY_PACK]
        setup = assert_setup_then_plan_then_pulumi(steps, stack_expr)
        assert setup["with"]["aws-role-arn"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
        assert setup["with"]["gcp-service-account"] == "${{ vars.GCP_DEPLOY_SERVICE_ACCOUNT }}"
        assert setup["with"]["pulumi-organization"] == "${{ vars.PULUMI_ORG }}"


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
                       "pulumi/auth-actions", "actions/setup-python"):
            assert not steps_using(steps, action), f"{name}:{job_name} repeats {action}"


def test_setup_builds_the_policy_packs_virtualenv():
    """``pulumi preview --policy-pack policies`` runs the pack from ``policies/.venv``."""
    pack = yaml.safe_load((REPO / POLICY_PACK / "PulumiPolicy.yaml").read_text())
    venv = pack["runtime"]["options"]["virtualenv"]
    steps = yaml.safe_load(SETUP_ACTION.read_text())["runs"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert f"python -m venv {POLICY_PACK}/{venv}" in runs
    assert f"{POLICY_PACK}/{venv}/bin/python -m pip install -q -r {POLICY_PACK}/requirements.txt" in runs
