"""The pin table (``components/pins.py``) against the plans of every reference stack and
every example under ``examples/``: every Helm release, container image and EKS add-on the
plans use is a pin, and every pin says where it was verified."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pulumi
import pytest

from gpu_fleet.components import pins
from gpu_fleet.components.config import RegionConfig
from gpu_fleet.plan import StackPlan, plan_stack
from gpu_fleet.project import stack_files

REPO = Path(__file__).resolve().parents[2]
STACKS = sorted(p.stem.removeprefix("Pulumi.") for p in stack_files(REPO / "stacks"))
EXAMPLES = sorted(d.name for d in (REPO / "examples").iterdir() if (d / "stacks").is_dir())
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
EKS_ADDON = "aws:eks/addon:Addon"


def chart_ref(inputs: dict) -> tuple[str, str, str]:
    """``(repository, chart, version)`` of a Helm release; an ``oci://`` chart names its
    repository itself."""
    chart = inputs["chart"]
    if chart.startswith("oci://"):
        repository, _, chart = chart.rpartition("/")
    else:
        repository = (inputs.get("repositoryOpts") or {}).get("repo", "")
    return repository, chart, inputs.get("version", "")


def pod_images(manifest: dict) -> list[str]:
    spec = manifest.get("spec") or {}
    pod = spec if manifest["kind"] == "Pod" else (spec.get("jobTemplate", {}).get("spec", spec)
                                                  .get("template", {}).get("spec"))
    if not pod:
        return []
    return [c["image"] for c in pod.get("containers", []) + pod.get("initContainers", [])]


def planned_pins(plan) -> set[tuple[str, ...]]:
    rec = plan.recording
    used: set[tuple[str, ...]] = set()
    for r in rec.of_type(HELM_RELEASE):
        used.add(("helm-chart", *chart_ref(r.plain_inputs)))
    for r in rec.of_type(EKS_ADDON):
        used.add(("eks-addon", r.plain_inputs["addonName"], r.plain_inputs.get("addonVersion") or ""))
    for _, manifest in rec.kubernetes_objects():
        used.update(("image", image) for image in pod_images(manifest))
    return used


def table() -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for p in pins.PINS:
        if p.kind == "helm-chart":
            out.add(("helm-chart", p.repository or "", p.name, p.version or ""))
        elif p.kind == "eks-addon":
            out.add(("eks-addon", p.name, p.version or ""))
        elif p.kind == "image":
            out.add(("image", p.image))
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_image_and_addon_in_the_plan_is_a_pin(reference_plan, stack):
    missing = planned_pins(reference_plan(stack)) - table()
    assert not missing, f"{stack}: not in components/pins.py: {sorted(missing)}"


@pytest.fixture(scope="module")
def example_plans() -> dict[str, dict[str, StackPlan]]:
    """Every example's stacks, planned once (about 15 s for the three examples' 15 stacks)."""
    plans: dict[str, dict[str, StackPlan]] = {}
    for example in EXAMPLES:
        stacks: dict[str, StackPlan] = {}
        for path in stack_files(REPO / "examples" / example / "stacks"):
            plan = plan_stack(path, REPO / "__main__.py", stacks)
            stacks[plan.stack] = plan
        plans[example] = stacks
    pulumi.runtime.settings.set_root_resource(None)
    return plans


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_release_image_and_addon_of_an_example_is_a_pin(example_plans, example):
    stacks = example_plans[example]
    assert stacks, f"examples/{example}/stacks has no stack file"
    for stack, plan in stacks.items():
        used = planned_pins(plan)
        missing = used - table()
        assert not missing, f"examples/{example} {stack}: not in components/pins.py: {sorted(missing)}"
        if isinstance(plan.config, RegionConfig):
            # Not vacuous: every region deploys the monitoring chart and serves vLLM.
            assert ("helm-chart", pins.KUBE_PROMETHEUS_STACK.repository, pins.KUBE_PROMETHEUS_STACK.name,
                    pins.KUBE_PROMETHEUS_STACK.version) in used, stack
            assert ("image", pins.VLLM.image) in used, stack
        if isinstance(plan.config, RegionConfig) and plan.config.cloud == "aws":
            assert {u[1] for u in used if u[0] == "eks-addon"} == set(pins.EKS_ADDONS), stack


def test_the_region_plans_use_the_pinned_charts_and_images(reference_plan):
    used = planned_pins(reference_plan("us-east")) | planned_pins(reference_plan("eu-west"))
    for pin in (pins.KUBE_PROMETHEUS_STACK, pins.PROMETHEUS_ADAPTER, pins.GPU_OPERATOR,
                pins.AWS_LOAD_BALANCER_CONTROLLER):
        assert ("helm-chart", pin.repository, pin.name, pin.version) in used
    assert ("image", pins.VLLM.image) in used


def test_the_check_catches_an_unpinned_chart_and_image(reference_plan, monkeypatch):
    monkeypatch.setattr(pins, "PINS", tuple(p for p in pins.PINS if p not in (pins.KUBE_PROMETHEUS_STACK, pins.VLLM)))
    missing = planned_pins(reference_plan("eu-west")) - table()
    assert ("image", pins.VLLM.image) in missing
    assert ("helm-chart", pins.PROMETHEUS_COMMUNITY_REPO, "kube-prometheus-stack", "81.4.3") in missing


def test_oci_charts_name_their_repository():
    assert chart_ref({"chart": "oci://public.ecr.aws/karpenter/karpenter", "version": "1.14.1"}) == (
        "oci://public.ecr.aws/karpenter", "karpenter", "1.14.1")


@pytest.mark.parametrize("pin", pins.PINS, ids=lambda p: f"{p.kind}:{p.name}")
def test_every_pin_names_its_source_and_date(pin):
    assert pin.source.strip()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", pin.verified)
    # Anything left open is said, never guessed: no version means the reason is given.
    if pin.version is None or (pin.kind == "image" and pin.digest is None):
        assert pin.unverified, f"{pin.name}: say why the version or digest is missing"
    if pin.digest is not None:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", pin.digest)


def test_the_unpublished_chart_version_is_gone():
    assert pins.KUBE_PROMETHEUS_STACK.version != "81.4.5"


def test_vendored_files_match_their_pinned_digest():
    for pin in pins.of_kind("vendored-file"):
        data = (REPO / "components" / "data" / pin.name).read_bytes()
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == pin.digest, pin.name


def test_images_carry_the_digest_when_known():
    pinned = pins.Pin("image", "example/app", "v1", source="x", digest="sha256:" + "a" * 64)
    assert pinned.image == "example/app:v1@sha256:" + "a" * 64
    assert pins.VLLM.image == "vllm/vllm-openai:v0.33.0"
    with pytest.raises(ValueError):
        _ = pins.KUBE_PROMETHEUS_STACK.image
