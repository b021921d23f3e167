"""Global routing policies: Route 53 health checks and the failover budget."""

from __future__ import annotations


from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from resource_access import (
    GLOBAL_ROUTING,
    ROUTE53_HEALTH_CHECK,
    ROUTE53_RECORD,
    get,
    items,
    _schema,
    _seconds,
    settings,
)

# --------------------------------------------------------------------------- global routing


def validate_route53_record_health(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROUTE53_RECORD:
        return
    p = args.props
    name = f"{get(p, 'name', default=args.name)} ({get(p, 'setIdentifier', default='no set identifier')})"
    # An alias that evaluates its target's health is checked through the records it points at (Route 53
    # developer guide, "How health checks work in complex Amazon Route 53 configurations").
    checked = bool(get(p, "healthCheckId")) or any(get(a, "evaluateTargetHealth") for a in items(get(p, "aliases")))
    if items(get(p, "latencyRoutingPolicies")) and not checked:
        report(f"latency record {name} has no healthCheckId and evaluates no target health: Route 53 keeps sending "
               "the nearest clients to this endpoint while its region is down.")
    if items(get(p, "weightedRoutingPolicies")) and not checked:
        report(f"weighted record {name} has no healthCheckId: Route 53 considers it always healthy and keeps "
               "answering with it while its region is down.")
    for policy in items(get(p, "failoverRoutingPolicies")):
        # A SECONDARY without a check is Route 53's documented last resort (treated healthy).
        if get(policy, "type") == "PRIMARY" and not checked:
            report(f"failover PRIMARY record {name} has no healthCheckId: Route 53 never fails over from it.")


HEALTH_CHECK_SCHEMA = _schema(
    allowedTypes={"type": "array", "items": {"type": "string"}, "default": ["HTTPS", "HTTPS_STR_MATCH"],
                  "description": "Route 53 health check types allowed for endpoints."},
)


def validate_route53_health_check(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROUTE53_HEALTH_CHECK:
        return
    p = args.props
    kind = get(p, "type")
    if kind == "CALCULATED":
        return  # an aggregate of other checks; those are checked themselves
    allowed = list(settings(args, HEALTH_CHECK_SCHEMA)["allowedTypes"])
    if kind not in allowed:
        report(f"health check type {kind}; use {' or '.join(allowed)}: the check must take the clients' path, "
               "TLS included, or a broken certificate or listener goes unnoticed.")
    if not get(p, "resourcePath"):
        report("no resourcePath: the check must request a path that proves the region serves (the model's health "
               "URL), not only that a TCP port answers.")


BUDGET_SCHEMA = _schema(
    maxFailoverSeconds={"type": "number", "exclusiveMinimum": 0, "default": 30,
                        "description": "Regional failover must be detected and switched in under this many seconds "
                                       "(seed: < 30 s)."},
)


def validate_failover_budget(args: StackValidationArgs, report: ReportViolation) -> None:
    limit = settings(args, BUDGET_SCHEMA)["maxFailoverSeconds"]
    for r in args.resources:
        if r.resource_type != GLOBAL_ROUTING:
            continue
        budget, target = get(r.props, "failoverBudgetSeconds"), get(r.props, "failoverTargetSeconds")
        mode, why = get(r.props, "routingMode", default="?"), get(r.props, "failoverBudget", "message", default="")
        if budget is None:
            report(f"global routing {r.name} does not report failoverBudgetSeconds, so its failover time is unknown.", r.urn)
            continue
        bound = min(limit, target) if target is not None else limit
        if budget >= bound:
            report(f"global routing {r.name} ({mode}): worst-case failover {_seconds(budget)}, target "
                   f"{_seconds(target) if target is not None else 'unset'}, policy limit under {_seconds(limit)}. {why}",
                   r.urn)
