"""The global stack: one name per model, ``<model>.<domain>``, in front of the region stacks.

The region stacks export their entry points (see
:meth:`gpu_fleet.components.entrypoint.Entrypoint.exports`); the global stack reads them through
``StackReference`` s and routes each client to the nearest region that can serve the
model. Which models a region serves, and its cloud and location, are read from its stack
file at config time, so the checks run and the resources are known before anything is
created; a region output that is missing (a region not yet deployed with this version)
fails the update naming the stack and the output.

Everything goes through this component's own ``aws`` provider in ``us-east-1`` (Route 53
and Global Accelerator are global services homed there), never a default provider.

**DNS mode** (default; any clouds): in the hosted zone (by ID, looked up by name, or
created and protected with ``createHostedZone``):

- per region and model, a Route 53 health check of ``https://<model>.<region domain>/health``
  (HTTPS with SNI, port 443, the configured interval and threshold, latency measured).
  The load balancer forwards only to Ready pods, so the check passes only while the
  region can serve that model;
- per model and AWS latency label (:mod:`gpu_fleet.components.latency_regions`), one latency record
  ``<model>.<global domain>``, identified by the first region stack (in ``regions`` order)
  serving the model under that label:

  - one region under the label: a CNAME to ``<model>.<region domain>`` with ``ttlSeconds``,
    tied to that region's health check. Not an alias to the load balancer: an alias cannot
    carry a TTL of our choosing (Route 53 uses the target's) and would take its health from
    ``evaluate_target_health`` on the whole load balancer rather than from the per-model
    check. The client name is never a zone apex, so a CNAME is allowed;
  - several regions under the label (Route 53 keeps one latency record per region label
    and name): a latency *alias* record with ``evaluate_target_health`` on, pointing at a
    weighted record set ``<model>.<label>.latency.<global domain>`` that holds one CNAME per
    region (``ttlSeconds``, weight ``routing.dns.weights`` or 1, that region's health
    check). This is the decision tree of the Route 53 developer guide, "How health checks
    work in complex Amazon Route 53 configurations" (awsdocs/amazon-route53-docs@0ff8bb6
    doc_source/dns-failover-complex-configs.md): latency alias records on top, Evaluate
    Target Health "Yes" so Route 53 backs out of a label whose weighted records are all
    unhealthy and takes the next-best label, health checks on every non-alias record, none
    on the alias. The alias has no TTL of its own: resolvers get the weighted CNAME's.
    Keeping the record's name and identifier when a second region joins a label turns the
    CNAME into the alias in place rather than replacing it (unverified against the pinned
    provider's update path);
- per region and model, the simple record ``<model>.<region domain>`` (an alias A to the
  ALB, or an A to the GCP static IP), when the region's domain lies in the hosted zone
  (below ``hostedZoneName``, or below the global domain when the zone is given by ID).
  Otherwise the region's domain is served elsewhere and must point there itself; the
  plan warns.

**Anycast mode** (every region on AWS): an AWS Global Accelerator with a TCP listener on
443, one endpoint group per AWS region ("one for each AWS Region in which you have endpoint
resources", Global Accelerator developer guide, "Working with standard accelerators") with
the ALB of every region stack in that region as its endpoints (client IP preserved), and
alias records ``<model>.<global domain>`` to the accelerator. The config check holds the
documented, non-adjustable quotas: 10 ALB endpoints per endpoint group and 42 endpoint
groups per accelerator ("Quotas for AWS Global Accelerator").
It fails over per region, not per model (the plan warns): the accelerator takes each ALB's
health from the ALB's own target checks, and one ALB serves all of a region's models
(:mod:`gpu_fleet.components.failover`).

Replacements: Pulumi creates the replacement before deleting the old resource (its
default; nothing here sets ``delete_before_replace``). Health checks have no unique name
to collide on. A record is replaced only when its zone, name or set identifier changes,
which gives the new one a different identity; record types never change (CNAME for the
latency records, A for the others).

Failback is automatic: Route 53 answers with a region again, and Global Accelerator sends
new connections to it again, as soon as its health checks pass. The failover budget
(:mod:`gpu_fleet.components.failover`) is a component property and a stack output, and a warning
when it misses the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypedDict

import pulumi
import pulumi_aws as aws

from .config import (
    PROJECT,
    WEIGHTED_SUBDOMAIN,
    DnsRoutingConfig,
    GlobalConfig,
    RegionConfig,
    RoutingConfig,
    in_zone,
    load_stack_file,
)
from .entrypoint import HTTPS_PORT, LB_CHECK_INTERVAL_SECONDS, LB_UNHEALTHY_THRESHOLD
from .failover import FailoverBudget, anycast_budget, dns_budget
from .contract import FLEET_LABELS
from .latency_regions import latency_region

#: Route 53 and Global Accelerator are global services whose APIs live in us-east-1.
GLOBAL_AWS_REGION = "us-east-1"
#: The regional names point at a load balancer that only changes when a region is rebuilt.
REGIONAL_RECORD_TTL_SECONDS = 300
_TAGS = dict(FLEET_LABELS)


# --------------------------------------------------------------------------- region stacks


def stack_reference_name(organization: str, stack: str) -> str:
    """The fully qualified name a region stack is referenced by."""
    return f"{organization}/{PROJECT}/{stack}"


def _require(ref: pulumi.StackReference, ref_name: str, output: str) -> pulumi.Output[Any]:
    def present(value: Any) -> Any:
        if value is None:
            raise pulumi.RunError(f"region stack {ref_name} has no output {output!r}; run `pulumi up` on it "
                                  "(with this version of gpu-fleet) before the global stack")
        return value

    return ref.get_output(output).apply(present)


@dataclass(frozen=True)
class RegionEndpoint:
    """A region stack's entry point as the global stack sees it.

    ``config`` is the region's stack file (config time); the outputs come from its
    deployed stack. The load balancer is ``hostname``/``zone_id``/``arn`` on AWS and
    ``ip`` on GCP (None on the other cloud).
    """

    stack: str
    reference: str
    config: RegionConfig
    #: The AWS region Route 53 latency routing labels this region with.
    latency_region: str
    domain: pulumi.Output[str]
    model_hostnames: pulumi.Output[dict]
    health_path: pulumi.Output[str]
    health_port: pulumi.Output[int]
    hostname: Optional[pulumi.Output[str]] = None
    zone_id: Optional[pulumi.Output[str]] = None
    arn: Optional[pulumi.Output[str]] = None
    ip: Optional[pulumi.Output[str]] = None

    @property
    def cloud(self) -> str:
        return self.config.cloud

    @property
    def location(self) -> str:
        return self.config.location

    @property
    def models(self) -> list[str]:
        """The models the stack file serves, in its order."""
        return [m.name for m in self.config.models]

    def model_hostname(self, model: str) -> pulumi.Output[str]:
        """``<model>.<region domain>`` as the deployed region exports it."""
        def pick(hostnames: dict) -> str:
            if model not in hostnames:
                raise pulumi.RunError(f"region stack {self.reference} exports no hostname for model {model!r} "
                                      f"in 'modelHostnames' (it has {', '.join(sorted(hostnames)) or 'none'}); "
                                      "run `pulumi up` on it first")
            return hostnames[model]

        return self.model_hostnames.apply(pick)


def region_endpoint(organization: str, stack: str, config: RegionConfig) -> RegionEndpoint:
    """A StackReference to region stack ``stack`` and the outputs the global stack needs."""
    label = latency_region(config.cloud, config.location)
    if label is None:
        raise ValueError(f"{stack}: no latency-routing label for {config.cloud} region {config.location}")
    reference = stack_reference_name(organization, stack)
    ref = pulumi.StackReference(reference)

    def same_domain(deployed: str) -> str:
        if deployed != config.entrypoint.domain:
            raise pulumi.RunError(f"region stack {reference} is deployed with domain {deployed} but its stack file "
                                  f"says {config.entrypoint.domain}; run `pulumi up` on it first")
        return deployed

    def need(output: str) -> pulumi.Output[Any]:
        return _require(ref, reference, output)

    lb = ({"hostname": need("entrypointHostname"), "zone_id": need("entrypointZoneId"), "arn": need("entrypointArn")}
          if config.cloud == "aws" else {"ip": need("entrypointIp")})
    return RegionEndpoint(
        stack=stack,
        reference=reference,
        config=config,
        latency_region=label,
        domain=need("domain").apply(same_domain),
        model_hostnames=need("modelHostnames"),
        health_path=need("healthPath"),
        health_port=need("healthPort"),
        **lb,
    )


def region_endpoints(cfg: GlobalConfig, stacks_dir: Path) -> list[RegionEndpoint]:
    """Every region of the global stack, from its stack file in ``stacks_dir`` and its
    deployed outputs (one ``StackReference`` each, ``<organization>/gpu-fleet/<stack>``)."""
    endpoints = []
    for stack in cfg.regions:
        config = load_stack_file(Path(stacks_dir) / f"Pulumi.{stack}.yaml")
        if not isinstance(config, RegionConfig):
            raise ValueError(f"{stack} is not a region stack")
        endpoints.append(region_endpoint(cfg.organization, stack, config))
    return endpoints


# --------------------------------------------------------------------------- pure decisions


def failover_budget(routing: RoutingConfig) -> FailoverBudget:
    """The worst-case failover time of the configured routing mode."""
    if routing.mode == "dns":
        d = routing.dns
        return dns_budget(d.health_check_interval_seconds, d.failure_threshold, d.ttl_seconds,
                          d.propagation_allowance_seconds, routing.failover_target_seconds)
    return anycast_budget(LB_CHECK_INTERVAL_SECONDS, LB_UNHEALTHY_THRESHOLD, routing.failover_target_seconds)


def _grouped(regions: Sequence[RegionEndpoint], key: Callable[[RegionEndpoint], str]) -> dict[str, list[RegionEndpoint]]:
    out: dict[str, list[RegionEndpoint]] = {}
    for r in regions:
        out.setdefault(key(r), []).append(r)
    return out


def latency_groups(regions: Sequence[RegionEndpoint], model: str) -> dict[str, list[RegionEndpoint]]:
    """The regions serving ``model`` by AWS latency label, each in config order; the first
    region of a group owns the label's latency record."""
    return _grouped([r for r in regions if model in r.models], lambda r: r.latency_region)


def by_location(regions: Sequence[RegionEndpoint]) -> dict[str, list[RegionEndpoint]]:
    """Region stacks by cloud location, each in config order (anycast: one endpoint group
    per AWS region, with every stack in it)."""
    return _grouped(regions, lambda r: r.location)


def weighted_name(model: str, label: str, domain: str) -> str:
    """The weighted record set behind a latency label shared by several regions."""
    return f"{model}.{label}.{WEIGHTED_SUBDOMAIN}.{domain}"


def served_by(regions: Sequence[RegionEndpoint]) -> dict[str, list[str]]:
    """Model name to the region stacks serving it, in config order."""
    out: dict[str, list[str]] = {}
    for r in regions:
        for model in r.models:
            out.setdefault(model, []).append(r.stack)
    return out


def zone_apex(dns: DnsRoutingConfig, domain: str) -> str:
    """The hosted zone's name as far as config knows it: ``hostedZoneName``, or, for a
    zone given by ID, the global domain (the zone must hold it for the client names)."""
    return dns.hosted_zone_name or domain


# --------------------------------------------------------------------------- component


class GlobalRoutingArgs(TypedDict):
    """Arguments of :class:`GlobalRouting`.

    config: the validated global config (``gpu_fleet.components.config.GlobalConfig``): ``domain``
        and ``routing`` (mode ``dns`` by default; hosted zone, health check interval 10 s,
        failure threshold 2, TTL 10 s, propagation allowance 10 s, checker regions all;
        anycast interval 10 s, threshold 3, client affinity NONE, no flow logs; target 30 s).
    regions: the region stacks' entry points (:func:`region_endpoints`).
    """

    config: GlobalConfig
    regions: Sequence[RegionEndpoint]


class GlobalRouting(pulumi.ComponentResource):
    """One latency-routed, health-checked name per model (``gpufleet:index:GlobalRouting``).

    Component properties (for policy packs): ``failoverBudgetSeconds``,
    ``failoverTargetSeconds``, ``failoverBudget`` (parts, verdict and message) and
    ``routingMode``. After construction: ``budget``
    (:class:`~gpu_fleet.components.failover.FailoverBudget`), ``endpoints`` (model to
    ``<model>.<domain>``), ``health_check_ids`` (region stack to model to health check
    ID; empty in anycast mode), ``latency_labels`` (model to Route 53 latency label to the
    region stacks behind it, exported as ``latencyLabels``; empty in anycast mode),
    ``provider`` (the ``aws`` provider everything uses),
    ``zone_id``, and in anycast mode ``accelerator``.
    """

    def __init__(self, name: str, args: GlobalRoutingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        cfg, regions = args["config"], list(args["regions"])
        self.config = cfg
        self.budget = failover_budget(cfg.routing)
        super().__init__(
            "gpufleet:index:GlobalRouting",
            name,
            {
                "failoverBudgetSeconds": self.budget.total,
                "failoverTargetSeconds": self.budget.target,
                "failoverBudget": self.budget.summary(),
                "routingMode": cfg.routing.mode,
            },
            opts,
        )
        self.provider = aws.Provider(f"{name}-aws", region=GLOBAL_AWS_REGION, opts=pulumi.ResourceOptions(parent=self))
        served = served_by(regions)
        self.endpoints = {model: f"{model}.{cfg.domain}" for model in served}
        self.health_check_ids: dict[str, dict[str, pulumi.Output[str]]] = {}
        #: DNS mode: model to latency label to the region stacks behind it (config order).
        self.latency_labels: dict[str, dict[str, list[str]]] = {}
        self.name_servers: Optional[pulumi.Output[list[str]]] = None
        self.accelerator: Optional[aws.globalaccelerator.Accelerator] = None
        self.zone_id = self._zone(name, cfg.routing.dns)

        if cfg.routing.mode == "dns":
            self._dns(name, cfg, regions)
            for model, stacks in served.items():
                if len(stacks) == 1:
                    pulumi.log.warn(f"model {model} is served only in {stacks[0]}: {self.endpoints[model]} has no "
                                    "region to fail over to", resource=self)
        else:
            self._anycast(name, cfg, regions)
            pulumi.log.warn("anycast routing fails over per region, not per model: Global Accelerator knows one "
                            "health per region's load balancer, which serves all of the region's models",
                            resource=self)
        if not self.budget.meets_target:
            pulumi.log.warn(self.budget.message, resource=self)
        # A real policy run reads a component's registered outputs (the props above serve the offline plan).
        self.register_outputs({
            "endpoints": self.endpoints, "healthCheckIds": self.health_check_ids,
            "failoverBudgetSeconds": self.budget.total, "failoverTargetSeconds": self.budget.target,
            "failoverBudget": self.budget.summary(), "routingMode": cfg.routing.mode,
        })

    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider, **kwargs)

    def _zone(self, name: str, dns: DnsRoutingConfig) -> pulumi.Output[str]:
        if dns.create_hosted_zone:
            zone = aws.route53.Zone(f"{name}-zone", name=dns.hosted_zone_name,
                                    comment="gpu-fleet: model names and their regions",
                                    tags=_TAGS, opts=self._opts(protect=True))
            self.name_servers = zone.name_servers
            return zone.zone_id
        if dns.hosted_zone_id:
            return pulumi.Output.from_input(dns.hosted_zone_id)
        found = aws.route53.get_zone_output(
            name=dns.hosted_zone_name, private_zone=False,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=self.provider),
        )
        return found.zone_id

    def _dns(self, name: str, cfg: GlobalConfig, regions: list[RegionEndpoint]) -> None:
        dns = cfg.routing.dns
        apex = zone_apex(dns, cfg.domain)
        for r in regions:
            entry = r.config.entrypoint
            owns = in_zone(entry.domain, apex)
            if not owns:
                pulumi.log.warn(f"{r.stack}: {entry.domain} is outside hosted zone {apex}; the names "
                                f"<model>.{entry.domain} must point at the region's load balancer where that "
                                "domain is served", resource=self)
            ids: dict[str, pulumi.Output[str]] = {}
            for model in r.models:
                regional = r.model_hostname(model)
                if owns:
                    self._regional_record(name, r, model, regional)
                ids[model] = aws.route53.HealthCheck(
                    f"{name}-{r.stack}-{model}",
                    type="HTTPS",
                    fqdn=regional,
                    port=r.health_port,
                    resource_path=r.health_path,
                    enable_sni=True,
                    request_interval=dns.health_check_interval_seconds,
                    failure_threshold=dns.failure_threshold,
                    measure_latency=True,
                    regions=list(dns.health_check_regions) or None,
                    tags={**_TAGS, "Name": f"{model} in {r.stack}"},
                    opts=self._opts(),
                ).id
            self.health_check_ids[r.stack] = ids
        for model in self.endpoints:
            for label, group in latency_groups(regions, model).items():
                self.latency_labels.setdefault(model, {})[label] = [r.stack for r in group]
                self._latency_record(name, cfg, model, label, group)

    def _latency_record(self, name: str, cfg: GlobalConfig, model: str, label: str,
                        group: list[RegionEndpoint]) -> None:
        """The latency record of ``model`` for ``label``, owned by the group's first region."""
        dns, lead = cfg.routing.dns, group[0]
        common = dict(zone_id=self.zone_id, name=self.endpoints[model], type="CNAME", set_identifier=lead.stack,
                      latency_routing_policies=[{"region": label}])
        if len(group) == 1:
            aws.route53.Record(f"{name}-{model}-{lead.stack}", ttl=dns.ttl_seconds,
                               records=[lead.model_hostname(model)],
                               health_check_id=self.health_check_ids[lead.stack][model], **common, opts=self._opts())
            return
        behind = weighted_name(model, label, cfg.domain)
        weighted = [
            aws.route53.Record(
                f"{name}-{model}-{r.stack}-weighted",
                zone_id=self.zone_id,
                name=behind,
                type="CNAME",
                ttl=dns.ttl_seconds,
                records=[r.model_hostname(model)],
                set_identifier=r.stack,
                weighted_routing_policies=[{"weight": dns.weight(r.stack)}],
                health_check_id=self.health_check_ids[r.stack][model],
                opts=self._opts(),
            )
            for r in group
        ]
        # Evaluate Target Health: the alias is healthy while one weighted record is; no health
        # check of its own (the guide recommends them on non-alias records only).
        aws.route53.Record(f"{name}-{model}-{lead.stack}",
                           aliases=[{"name": behind, "zone_id": self.zone_id, "evaluate_target_health": True}],
                           **common, opts=self._opts(depends_on=weighted))

    def _regional_record(self, name: str, r: RegionEndpoint, model: str, regional: pulumi.Output[str]) -> None:
        if r.cloud == "aws":
            target: dict[str, Any] = {"aliases": [{"name": r.hostname, "zone_id": r.zone_id,
                                                   "evaluate_target_health": False}]}
        else:
            target = {"ttl": REGIONAL_RECORD_TTL_SECONDS, "records": [r.ip]}
        aws.route53.Record(f"{name}-{r.stack}-{model}-regional", zone_id=self.zone_id, name=regional, type="A",
                           **target, opts=self._opts())

    def _anycast(self, name: str, cfg: GlobalConfig, regions: list[RegionEndpoint]) -> None:
        a = cfg.routing.anycast
        attributes = None
        if a.flow_logs_bucket:
            attributes = {"flow_logs_enabled": True, "flow_logs_s3_bucket": a.flow_logs_bucket,
                          "flow_logs_s3_prefix": a.flow_logs_prefix}
        self.accelerator = aws.globalaccelerator.Accelerator(
            f"{name}-accelerator", ip_address_type="IPV4", enabled=True, attributes=attributes, tags=_TAGS,
            opts=self._opts(),
        )
        # TCP passes TLS through to the ALBs, which hold the certificates.
        listener = aws.globalaccelerator.Listener(
            f"{name}-https", accelerator_arn=self.accelerator.arn, protocol="TCP",
            port_ranges=[{"from_port": HTTPS_PORT, "to_port": HTTPS_PORT}], client_affinity=a.client_affinity,
            opts=self._opts(),
        )
        for group in by_location(regions).values():
            lead = group[0]  # names the group, so adding a second stack in a region keeps it
            aws.globalaccelerator.EndpointGroup(
                f"{name}-{lead.stack}",
                listener_arn=listener.arn,
                endpoint_group_region=lead.location,
                endpoint_configurations=[{"endpoint_id": r.arn, "client_ip_preservation_enabled": True}
                                         for r in group],
                # Kept for the API; Global Accelerator ignores these for ALB endpoints and
                # uses the ALB's own target health (gpu_fleet.components.failover).
                health_check_interval_seconds=a.health_check_interval_seconds,
                threshold_count=a.threshold_count,
                health_check_protocol="HTTPS",
                health_check_port=lead.health_port,
                health_check_path=lead.health_path,
                opts=self._opts(),
            )
        for model, hostname in self.endpoints.items():
            aws.route53.Record(
                f"{name}-{model}",
                zone_id=self.zone_id,
                name=hostname,
                type="A",
                # One record per name: there is no other answer to fall back to.
                aliases=[{"name": self.accelerator.dns_name, "zone_id": self.accelerator.hosted_zone_id,
                          "evaluate_target_health": False}],
                opts=self._opts(),
            )


def export_global(routing: GlobalRouting) -> None:
    """The global stack's outputs: routing mode, failover budget, client names, checks."""
    budget = routing.budget
    pulumi.export("routingMode", routing.config.routing.mode)
    pulumi.export("failoverBudgetSeconds", budget.total)
    pulumi.export("failoverBudget", budget.summary())
    pulumi.export("failoverTargetSeconds", budget.target)
    pulumi.export("endpoints", routing.endpoints)
    pulumi.export("healthCheckIds", routing.health_check_ids)
    if routing.latency_labels:
        pulumi.export("latencyLabels", routing.latency_labels)
    if routing.name_servers is not None:
        pulumi.export("hostedZoneNameServers", routing.name_servers)
    if routing.accelerator is not None:
        pulumi.export("acceleratorIps", routing.accelerator.ip_sets.apply(
            lambda sets: [ip for s in sets or [] for ip in s.ip_addresses or []]))
