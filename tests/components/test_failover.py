"""Failover budget arithmetic: the parts, the verdict against the target, and fixes that
really meet it."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gpu_fleet.components.failover import ACCELERATOR_REACTION_SECONDS, anycast_budget, dns_budget


def test_dns_budget_is_detection_plus_propagation_plus_ttl():
    b = dns_budget(interval=10, threshold=1, ttl=5, propagation=10, target=30)
    assert b.parts == (("detection", 10), ("propagation", 10), ("ttl", 5))
    assert b.total == 25 and b.target == 30 and b.meets_target
    assert b.fix == ""
    assert b.message == "dns failover budget 25 s (detection 10 s + propagation 10 s + ttl 5 s) is under the 30 s target"


def test_a_budget_equal_to_the_target_misses_it():
    # The seed asks for "< 30 seconds".
    b = dns_budget(interval=10, threshold=1, ttl=10, propagation=10, target=30)
    assert b.total == 30 and not b.meets_target


def test_missing_by_threshold_names_the_threshold_that_meets_it():
    b = dns_budget(interval=10, threshold=3, ttl=5, propagation=10, target=30)
    assert (b.total, b.meets_target) == (45, False)
    assert b.fix == "set routing.dns.failureThreshold to 1 (25 s)"
    assert b.message.endswith("misses the 30 s target; set routing.dns.failureThreshold to 1 (25 s)")


def test_missing_by_interval_names_the_interval():
    b = dns_budget(interval=30, threshold=1, ttl=5, propagation=10, target=30)
    assert b.total == 45
    assert b.fix == "set routing.dns.healthCheckIntervalSeconds to 10 (25 s)"


def test_missing_by_ttl_names_the_largest_ttl_that_meets_it():
    b = dns_budget(interval=10, threshold=1, ttl=60, propagation=10, target=30)
    assert b.total == 80
    assert b.fix == "set routing.dns.ttlSeconds to 9 (29 s)"


def test_several_single_fixes_are_all_offered():
    b = dns_budget(interval=10, threshold=2, ttl=15, propagation=0, target=30)
    assert b.total == 35
    assert b.fix == "set routing.dns.failureThreshold to 1 (25 s), or set routing.dns.ttlSeconds to 9 (29 s)"


def test_reference_settings_need_two_changes():
    # stacks/Pulumi.global.yaml: 10 s x 2, TTL 10, default propagation allowance 10.
    b = dns_budget(interval=10, threshold=2, ttl=10, propagation=10, target=30)
    assert b.total == 40 and not b.meets_target
    assert b.fix == ("no single setting meets it; set routing.dns.failureThreshold to 1 and "
                     "routing.dns.ttlSeconds to 9 (29 s)")


def test_when_nothing_can_meet_the_target_it_says_so():
    b = dns_budget(interval=30, threshold=3, ttl=60, propagation=25, target=30)
    assert b.fix.startswith("no setting meets it: even a 10 s interval, threshold 1 and TTL 0 give 35 s")


def test_propagation_allowance_is_never_suggested():
    b = dns_budget(interval=10, threshold=1, ttl=0, propagation=40, target=30)
    assert "propagation" not in b.fix and b.fix.startswith("no setting meets it")


def test_summary_is_the_stack_output_shape():
    s = dns_budget(10, 2, 10, 10, 30).summary()
    assert s["parts"] == {"detection": 20, "propagation": 10, "ttl": 10}
    assert (s["mode"], s["totalSeconds"], s["targetSeconds"], s["meetsTarget"]) == ("dns", 40, 30, False)
    assert s["message"].startswith("dns failover budget 40 s")
    assert "ignore the TTL" in s["notCounted"]


def test_anycast_budget_is_alb_detection_plus_the_accelerators_documented_reaction():
    b = anycast_budget(lb_interval=5, lb_unhealthy_threshold=2, target=60)
    assert b.parts == (("loadBalancerDetection", 10), ("acceleratorReaction", ACCELERATOR_REACTION_SECONDS))
    assert ACCELERATOR_REACTION_SECONDS == 30
    assert (b.total, b.meets_target, b.fix) == (40, True, "")


def test_anycast_cannot_promise_30_seconds_and_says_no_setting_helps():
    # Global Accelerator's endpoint group settings do not apply to ALB endpoints, so the
    # ALB's fastest checks (5 s x 2) plus the accelerator's 30 s are the floor.
    b = anycast_budget(lb_interval=5, lb_unhealthy_threshold=2, target=30)
    assert (b.total, b.meets_target) == (40, False)
    assert b.fix.startswith("no setting meets it: the load balancer's own checks take 10 s")
    assert "do not apply to ALB endpoints" in b.fix
    slow = anycast_budget(lb_interval=15, lb_unhealthy_threshold=2, target=30)
    assert slow.total == 60 and "checks take 30 s" in slow.fix


def test_budgets_say_what_fails_over_as_one():
    assert dns_budget(10, 1, 5, 10, 30).summary()["failsOver"] == "per model"
    assert anycast_budget(5, 2, 30).summary()["failsOver"] == "per region"


def _apply(fix: str, settings: dict) -> dict:
    """The settings after the changes one suggestion names."""
    names = {"healthCheckIntervalSeconds": "interval", "failureThreshold": "threshold", "ttlSeconds": "ttl"}
    out = dict(settings)
    for key, value in re.findall(r"routing\.dns\.(\w+) to (\d+)", fix):
        out[names[key]] = int(value)
    return out


@given(
    interval=st.sampled_from([10, 30]),
    threshold=st.integers(1, 10),
    ttl=st.integers(0, 300),
    propagation=st.integers(0, 60),
    target=st.integers(1, 120),
)
def test_every_suggested_fix_meets_the_target(interval, threshold, ttl, propagation, target):
    settings = {"interval": interval, "threshold": threshold, "ttl": ttl, "propagation": propagation}
    b = dns_budget(target=target, **settings)
    assert b.total == interval * threshold + propagation + ttl
    assert b.meets_target == (b.total < target)
    if b.meets_target:
        assert b.fix == ""
        return
    assert b.fix
    if b.fix.startswith("no setting meets it"):
        assert dns_budget(10, 1, 0, propagation, target).total >= target
        return
    suggestions = b.fix.split(", or ") if not b.fix.startswith("no single") else [b.fix]
    for suggestion in suggestions:
        fixed = _apply(suggestion, settings)
        assert fixed != settings
        assert dns_budget(target=target, **fixed).meets_target, suggestion
        # Each claims the total it gives.
        assert suggestion.endswith(f"({dns_budget(target=target, **fixed).total} s)")


def test_anycast_total_counts_no_ttl():
    b = anycast_budget(5, 2, 30)
    assert [name for name, _ in b.parts] == ["loadBalancerDetection", "acceleratorReaction"]
    assert b.total == 10 + ACCELERATOR_REACTION_SECONDS
