"""The plan's speed-ups leave its output unchanged (issue 16).

- Kubernetes YAML written by libyaml's emitter (``manifests.dump_yaml``) has the bytes
  ``yaml.safe_dump`` gives, for every object of the reference plans and for generated ones.
- Provider subpackages loaded lazily (``gpu_fleet.sdk_imports``) give the very objects their
  eager ``__init__.py`` binds.
- The SDK's stack walk is skipped only while a program runs.

Two plans of one stack giving the same bytes is ``test_plan_output``'s
``test_config_from_outside_the_project_gives_the_same_bytes``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi.runtime import resource as pulumi_resource

from gpu_fleet import engine, manifests

REPO = Path(__file__).resolve().parents[2]


def test_yaml_of_every_reference_object_is_what_safe_dump_writes(reference_plan):
    fast = 0
    for stack in ("us-east", "eu-west"):
        for _, manifest in reference_plan(stack).recording.kubernetes_objects():
            assert manifests.dump_yaml(manifest) == yaml.safe_dump(manifest, sort_keys=False)
            fast += manifests._plain_ascii(manifest)
    assert fast > 0  # the C emitter did write some of them


_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=120)
_unicode = st.text(max_size=120)
_leaf = st.one_of(_text, _unicode, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
_keys = st.one_of(_text, st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=90,
                                  max_size=140), _unicode)
_docs = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(_keys, inner, max_size=4)), max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_keys, _docs, max_size=5))
def test_dump_yaml_is_safe_dump_byte_for_byte(doc):
    assert manifests.dump_yaml(doc) == yaml.safe_dump(doc, sort_keys=False)


def test_lazy_subpackages_bind_what_the_eager_import_binds():
    # A fresh interpreter: this one may have imported the SDKs before gpu_fleet.
    script = textwrap.dedent("""
        import sys
        import gpu_fleet.engine
        import pulumi_aws as aws
        import pulumi_kubernetes as k8s
        names = {aws.ec2: ["Vpc", "VpcArgs", "get_vpc", "get_vpc_output", "GetVpcResult",
                           "LaunchTemplateBlockDeviceMappingArgs", "outputs"],
                 k8s.core.v1: ["ConfigMap", "ConfigMapArgs", "ContainerArgs", "outputs"]}
        lazy = {(pkg.__name__, n): getattr(pkg, n) for pkg, ns in names.items() for n in ns}
        assert "pulumi_aws.ec2.ami" not in sys.modules, "ec2 was imported whole"
        assert "pulumi_kubernetes.core.v1.Binding" not in sys.modules, "core.v1 was imported whole"
        for pkg, ns in names.items():
            assert "Ami" in dir(pkg) or "Binding" in dir(pkg)  # dir() runs the real __init__.py
            for n in ns:
                assert pkg.__dict__[n] is lazy[(pkg.__name__, n)], (pkg.__name__, n)
        assert aws.ec2.Ami.__module__ == "pulumi_aws.ec2.ami"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_an_unknown_name_is_an_attribute_error_after_the_real_init():
    script = textwrap.dedent("""
        import gpu_fleet.engine
        import pulumi_aws as aws
        try:
            aws.ec2.NoSuchThing
        except AttributeError as e:
            assert "NoSuchThing" in str(e)
            import sys
            assert "pulumi_aws.ec2.ami" in sys.modules  # the eager fallback ran
            print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_stack_walk_is_skipped_only_while_a_program_runs():
    original = pulumi_resource._get_stack_trace
    seen = []
    recording = engine.Recording(stack="walk")
    engine.install(recording, {})
    engine.run(lambda: seen.append(pulumi_resource._get_stack_trace), recording)
    assert seen and seen[0] is not original
    assert pulumi_resource._get_stack_trace is original
