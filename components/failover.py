"""How long regional failover can take, worst case, from the routing settings alone.

The seed asks to "detect and switch in < 30 seconds". This module computes what each
global routing design can honestly promise, shows the parts, and, when the total misses
the target, names the setting that would meet it (or says that no single one does).
Pure arithmetic: no Pulumi, tested on its own.

**DNS (Route 53 latency records with health checks)**, counted from the moment the
regional health URL starts failing (a region or load balancer outage, or the model's
last ready pod gone):

- detection: ``healthCheckIntervalSeconds x failureThreshold``. Route 53 checks "every 10
  seconds or every 30 seconds" and acts on a number of consecutive failures, the failure
  threshold (Route 53 Developer Guide, "How Amazon Route 53 determines whether a health
  check is healthy"; Route 53 API ``HealthCheckConfig.FailureThreshold``: "integers
  between 1 and 10");
- propagation: an allowance for Route 53 to act on the new status. AWS documents no
  figure for it (``propagationAllowanceSeconds``, an estimate);
- TTL: resolvers may keep the old answer for the record's TTL (``ttlSeconds``; RFC 1035
  caching), so a failed-over answer reaches a client within one TTL.

Regions that share a latency label sit behind a latency alias record with Evaluate Target
Health on and a weighted record set (:mod:`gpu_fleet.components.global_routing`). That layer adds no
term: the alias is judged from the same per-model health checks at query time ("Route 53
periodically checks the health of the endpoint ...; it doesn't perform the health check
when the DNS query arrives", Route 53 developer guide, "How Amazon Route 53 chooses records
when health checking is configured"), the weighted records carry the same ``ttlSeconds``
and the alias has no TTL of its own. A failed region moves its clients first to the other
regions under its label (by weight), and to the next-nearest label only when all of them
fail; either way within the same budget.

Not counted, because no setting here bounds them: resolvers that ignore TTLs, clients
that cache DNS themselves, and connections already open (they stay on the failed region
until they break). DNS mode fails over per model: each model has its own health check of
``https://<model>.<region domain>/health``.

**Anycast (AWS Global Accelerator in front of the regions' ALBs)**, counted from the
moment the model's pods stop answering ``/health``:

- load balancer detection: the ALB's own target health checks. For ALB endpoints Global
  Accelerator uses the load balancer's health, not its endpoint groups' settings:
  "Health check options that you choose in Global Accelerator do not affect Application
  Load Balancers or Network Load Balancers that you've added as endpoints" (Global
  Accelerator Developer Guide, "Health check options",
  awsdocs/aws-global-accelerator-dev-guide ``doc_source/about-endpoint-groups-health-check-options.md``;
  the "Endpoint groups" page: "For Network Load Balancer and Application Load Balancer
  endpoints, configure health check settings on the Elastic Load Balancing console").
  The entry point sets ``interval x unhealthy threshold``
  (:data:`gpu_fleet.components.entrypoint.LB_CHECK_INTERVAL_SECONDS` x
  :data:`~gpu_fleet.components.entrypoint.LB_UNHEALTHY_THRESHOLD`, 5 s x 2, the ALB's fastest).
  ``routing.anycast.healthCheckIntervalSeconds`` and ``thresholdCount`` therefore do not
  enter the budget;
- accelerator reaction: :data:`ACCELERATOR_REACTION_SECONDS`. AWS documents no failover
  time for load balancer endpoints; the AWS Global Accelerator workshop ("Failover") says
  it "takes AWS Global Accelerator up to 30 seconds ... to direct new connections to the
  next closest endpoint", and the developer guide ("How failover works for unhealthy
  endpoints") says routing returns to recovered endpoints "in about 30 seconds or so".
  30 s is that documented order, not a measurement (unverified for ALB endpoints). No DNS
  TTL: the anycast IPs never change.

Anycast mode fails over per region, not per model: the accelerator knows one health per
endpoint, and a region's one ALB serves all its models (one target group each). A model
that loses its last pod in one region answers 503 there while the accelerator still
sends that region's clients to it, or, if the accelerator counts the ALB unhealthy once
any target group is, moves every model away (which one AWS does for ALB endpoints is not
documented; unverified). Use DNS mode where per-model failover matters.

Failback is automatic in both designs: Route 53 answers with a region again, and Global
Accelerator sends new connections to it again, as soon as its health checks pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import ROUTE53_INTERVALS, ROUTE53_THRESHOLDS

#: How long Global Accelerator takes to send new connections away from an endpoint that
#: turned unhealthy (see the module docstring: documented order, not a measurement).
ACCELERATOR_REACTION_SECONDS = 30


@dataclass(frozen=True)
class FailoverBudget:
    """A worst-case failover time, in whole seconds, with its parts.

    mode: ``dns`` or ``anycast``.
    parts: ``(name, seconds)`` in the order they happen; ``total`` is their sum.
    target: the time to beat (the budget meets it when ``total < target``).
    fix: when the budget misses, a sentence naming the change that meets the target, or
        saying that none of the settings can; empty when it meets the target.
    """

    mode: Literal["dns", "anycast"]
    parts: tuple[tuple[str, int], ...]
    target: int
    fix: str = ""

    @property
    def total(self) -> int:
        return sum(seconds for _, seconds in self.parts)

    @property
    def meets_target(self) -> bool:
        return self.total < self.target

    @property
    def not_counted(self) -> str:
        """What the budget cannot bound."""
        if self.mode == "dns":
            return "resolvers that ignore the TTL, client DNS caches, and connections already open"
        return "connections already open (they stay on the failed region until they break)"

    @property
    def scope(self) -> str:
        """What fails over as one: each model (DNS, one health check per model and region)
        or a whole region (anycast, one health per ALB)."""
        return "per model" if self.mode == "dns" else "per region"

    @property
    def message(self) -> str:
        """One plain sentence: the budget, its parts, and the verdict (with the fix)."""
        parts = " + ".join(f"{name} {seconds} s" for name, seconds in self.parts)
        head = f"{self.mode} failover budget {self.total} s ({parts})"
        if self.meets_target:
            return f"{head} is under the {self.target} s target"
        return f"{head} misses the {self.target} s target; {self.fix}"

    def summary(self) -> dict:
        """The budget as a stack output: parts, total, target, verdict and message."""
        return {
            "mode": self.mode,
            "parts": dict(self.parts),
            "totalSeconds": self.total,
            "targetSeconds": self.target,
            "meetsTarget": self.meets_target,
            "message": self.message,
            "notCounted": self.not_counted,
            "failsOver": self.scope,
        }


def _dns_parts(interval: int, threshold: int, ttl: int, propagation: int) -> tuple[tuple[str, int], ...]:
    return (("detection", interval * threshold), ("propagation", propagation), ("ttl", ttl))


def _dns_total(interval: int, threshold: int, ttl: int, propagation: int) -> int:
    return sum(s for _, s in _dns_parts(interval, threshold, ttl, propagation))


def _dns_fix(interval: int, threshold: int, ttl: int, propagation: int, target: int) -> str:
    """The single changes that meet the target, else the fastest combination, else none.

    The propagation allowance is an estimate of Route 53, not a knob, so it is never
    suggested. Each suggestion keeps the other settings and changes its own as little as
    possible (the highest threshold or TTL that still meets the target).
    """
    def meets(i: int, t: int, ttl_: int) -> bool:
        return _dns_total(i, t, ttl_, propagation) < target

    single = []
    if interval != min(ROUTE53_INTERVALS) and meets(min(ROUTE53_INTERVALS), threshold, ttl):
        single.append(f"routing.dns.healthCheckIntervalSeconds to {min(ROUTE53_INTERVALS)} "
                      f"({_dns_total(min(ROUTE53_INTERVALS), threshold, ttl, propagation)} s)")
    fitting = [t for t in ROUTE53_THRESHOLDS if t < threshold and meets(interval, t, ttl)]
    if fitting:
        single.append(f"routing.dns.failureThreshold to {max(fitting)} "
                      f"({_dns_total(interval, max(fitting), ttl, propagation)} s)")
    ttl_room = target - 1 - interval * threshold - propagation
    if 0 <= ttl_room < ttl:
        single.append(f"routing.dns.ttlSeconds to {ttl_room} ({_dns_total(interval, threshold, ttl_room, propagation)} s)")
    if single:
        return "set " + ", or set ".join(single)

    fastest_interval, fastest_threshold = min(ROUTE53_INTERVALS), min(ROUTE53_THRESHOLDS)
    ttl_room = target - 1 - fastest_interval * fastest_threshold - propagation
    if ttl_room < 0:
        return (f"no setting meets it: even a {fastest_interval} s interval, threshold {fastest_threshold} and "
                f"TTL 0 give {_dns_total(fastest_interval, fastest_threshold, 0, propagation)} s; DNS failover "
                "cannot meet this target (use anycast routing)")
    changes = []
    if interval != fastest_interval:
        changes.append(f"routing.dns.healthCheckIntervalSeconds to {fastest_interval}")
    if threshold != fastest_threshold:
        changes.append(f"routing.dns.failureThreshold to {fastest_threshold}")
    changes.append(f"routing.dns.ttlSeconds to {min(ttl, ttl_room)}")
    total = _dns_total(fastest_interval, fastest_threshold, min(ttl, ttl_room), propagation)
    return f"no single setting meets it; set {' and '.join(changes)} ({total} s)"


def dns_budget(interval: int, threshold: int, ttl: int, propagation: int, target: int) -> FailoverBudget:
    """Route 53 latency records with health checks: detection + propagation + TTL.

    interval: seconds between health checks (``routing.dns.healthCheckIntervalSeconds``).
    threshold: consecutive failures before unhealthy (``routing.dns.failureThreshold``).
    ttl: the latency records' TTL (``routing.dns.ttlSeconds``).
    propagation: allowance for Route 53 to act (``routing.dns.propagationAllowanceSeconds``).
    target: the failover target in seconds (``routing.failoverTargetSeconds``).
    """
    parts = _dns_parts(interval, threshold, ttl, propagation)
    fix = "" if _dns_total(interval, threshold, ttl, propagation) < target else _dns_fix(
        interval, threshold, ttl, propagation, target)
    return FailoverBudget("dns", parts, target, fix)


def anycast_budget(lb_interval: int, lb_unhealthy_threshold: int, target: int) -> FailoverBudget:
    """Global Accelerator with ALB endpoints: ALB detection + accelerator reaction.

    lb_interval, lb_unhealthy_threshold: the ALB target groups' health check interval and
        unhealthy threshold (set by the entry point; Global Accelerator's own endpoint
        group settings do not apply to ALB endpoints).
    target: the failover target in seconds (``routing.failoverTargetSeconds``).
    """
    detection = lb_interval * lb_unhealthy_threshold
    parts = (("loadBalancerDetection", detection), ("acceleratorReaction", ACCELERATOR_REACTION_SECONDS))
    budget = FailoverBudget("anycast", parts, target)
    if budget.meets_target:
        return budget
    fix = (f"no setting meets it: the load balancer's own checks take {detection} s and Global Accelerator "
           f"takes up to {ACCELERATOR_REACTION_SECONDS} s to send new connections elsewhere (its endpoint "
           "group health check settings do not apply to ALB endpoints)")
    return FailoverBudget("anycast", parts, target, fix)
