"""The regional entry point: one TLS load balancer, one hostname per model.

Each model is served at ``<model>.<domain>`` and at ``<model>.<alias>`` for every
``entrypoint.aliases`` entry (the global domain clients use). Requests name the model in
their body, so routing by hostname lets an L7 load balancer pick the model's Service
without a body-parsing router, and gives each model its own health check: the load
balancer forwards only to Ready pods (Ready = the model is loaded), so
``https://<model>.<domain>/health`` succeeds only when this region can serve that model.

One Kubernetes Ingress per region, in the serving namespace, with one host rule per
hostname to the model's Service. TLS ends at the load balancer; the API key is checked by
the gateway (``LITELLM_MASTER_KEY``) and again by vLLM (``VLLM_API_KEY``), both from the
serving Secret, or by vLLM alone without the gateway. ``/health`` needs no key.

Only two paths reach vLLM (:data:`PUBLIC_PATHS`): ``/v1`` (Prefix) and ``/health``
(Exact). vLLM's API key guards only some paths: in v0.14.0 its
``AuthenticationMiddleware`` checks the key only when the path starts with ``/v1``
(vllm-project/vllm@v0.14.0 ``vllm/entrypoints/openai/api_server.py``, quoted in vLLM's
advisory on that middleware; the same check in v0.11.0 is unverified line by line),
later releases (docs v0.16.0 on) guard ``/v1``, ``/v2``, ``/inference`` and
``/cohere`` (vLLM docs, "Security": "only for endpoints under the /v1, /v2, /inference,
and /cohere path prefixes"), and current main guards every route but a public list
(``/health``, ``/ping``, ``/load``, ``/version``, ``/metrics``, the API docs;
``vllm/entrypoints/serve/utils/server_utils.py``). ``/invocations``, ``/tokenize``,
``/pooling``, ``/score``, ``/rerank`` and ``/metrics`` answer without a key in the
released versions, so they are never routed. Every other path gets the load balancer's
own 404: the AWS Load Balancer Controller gives the listener a fixed 404 response when no
Ingress has a default backend (kubernetes-sigs/aws-load-balancer-controller@v2.12.0
``pkg/ingress/model_build_listener.go`` ``buildListenerDefaultActions``), and GKE's URL
map sends unmatched paths of a host to the system default backend,
``kube-system/default-http-backend``, a 404 server (kubernetes/ingress-gce@v1.41.1
``pkg/translator/translator.go`` ``ToCompositeURLMap``, ``pkg/flags/flags.go``).
Both controllers turn a Prefix path ``/v1`` (or ``/v1/``) into the two rules ``/v1`` and
``/v1/*`` and keep an Exact path as it is (aws-load-balancer-controller@v2.12.0
``pkg/ingress/model_build_listener_rules.go`` ``buildPathPatternsForPrefixPathType``;
ingress-gce@v1.41.1 ``pkg/controller/translator/translator.go``
``validateAndModifyPrefixPathType``). Route 53 checks ``/health`` through the load
balancer; the load balancers' own checks, the kubelet's probes and Prometheus reach the
pods directly.

An ingress NetworkPolicy (:func:`model_ingress_policy_spec`) admits to the vLLM pods only
the load balancer's data path and Prometheus; no other pod in the cluster reaches them.
The load balancer's source addresses: on EKS (IP targets) the ALB's nodes, which live in
the public subnets, so the public subnets' CIDRs (pods get addresses in the private
subnets); on GKE (container-native, NEG) Google's front ends and health checkers,
``35.191.0.0/16`` and ``130.211.0.0/22`` (Cloud Load Balancing, "Firewall rules": for the
global external Application Load Balancer the GFE proxy ranges are the health check
ranges). Traffic from the pod's own node (the kubelet's probes) is always allowed: the
VPC CNI's policy agent adds the node IP to every policy (aws/aws-network-policy-agent@v1.4.1
``pkg/fwruleprocessor/fw_rule_processor.go``); on GKE Dataplane V2 the same is Kubernetes'
documented NetworkPolicy behaviour (unverified in Dataplane V2's source). EKS enforces
policies with the VPC CNI add-on's ``enableNetworkPolicy`` (EKS User Guide, "Restrict Pod
network traffic with Kubernetes network policies") and GKE with Dataplane V2
(``ADVANCED_DATAPATH``: "Kubernetes Network policy is always on in clusters with
Dataplane V2", GKE docs, "Dataplane V2"; the GKE concept page says the same), both set by
the cluster components.

Source ranges (``entrypoint.allowedCidrs``) are explicit. When they are not everyone, the
global routing's health checkers are admitted as well, or every Route 53 check would
fail (and with every record unhealthy, Route 53 answers as if all were healthy, so
failover silently stops):

- **AWS**: the AWS-managed prefix list ``com.amazonaws.<region>.route53-healthchecks``
  (Route 53 Developer Guide, "Configuring router and firewall rules for Amazon Route 53
  health checks"; weight 25 against the security group's rule quota, VPC User Guide,
  "AWS-managed prefix lists"), by ID in the controller's
  ``alb.ingress.kubernetes.io/security-group-prefix-lists``, which adds one rule per list
  to the ALB's security group beside the ``inbound-cidrs`` ones
  (aws-load-balancer-controller@v2.12.0 ``docs/guide/ingress/annotations.md``,
  ``pkg/ingress/model_build_managed_sg.go``).
- **GCP**: Cloud Armor cannot reference an AWS prefix list, so the published ranges
  (``ip-ranges.json``, service ``ROUTE53_HEALTHCHECKS``, Route 53 Developer Guide, "IP
  address ranges of Amazon Route 53 servers") are read at deployment through the AWS
  provider's ``getIpRanges`` (it needs AWS credentials, as the global stack does) and
  added as allow rules of at most ten ranges each (Compute API
  ``SecurityPolicyRuleMatcherConfig.srcIpRanges``: "Maximum number of src_ip_ranges
  allowed is 10").

- **AWS**: Ingress class ``alb`` (the AWS Load Balancer Controller the EKS cluster
  installs). An internet-facing ALB in the public subnets with IP targets (pods directly),
  HTTPS 443 only with ``entrypoint.certificate`` (ACM) and a TLS 1.3 policy, source ranges
  from ``allowedCidrs`` (plus the Route 53 health checkers), target health ``/health``,
  and a fixed name
  (:func:`alb_name`) so the region looks the ALB up after the Ingress is ready, for its
  ARN (Global Accelerator), DNS name and hosted zone (alias records).
- **GCP**: GKE's built-in controller. GKE documents the ``kubernetes.io/ingress.class:
  gce`` *annotation*: with only ``spec.ingressClassName`` set (and no annotation) the GKE
  controller takes no action ("GKE Ingress controller behavior", GKE Ingress concepts), so
  the annotation it is. A reserved global static IP, TLS from the pre-shared certificate
  ``entrypoint.certificate`` or else a Google-managed ``ManagedCertificate`` for every
  hostname, a ``FrontendConfig`` with an SSL policy (TLS 1.2+, MODERN) and no plain-HTTP
  listener, and a ``BackendConfig`` (health check ``/health``, a request timeout long
  enough for long generations, and a Cloud Armor policy admitting only ``allowedCidrs``
  and the Route 53 health checkers unless ``allowedCidrs`` is everyone). The model
  Services carry the NEG and BackendConfig annotations from :func:`service_annotations`.

The load balancer's own checks on the pods (:data:`LB_CHECK_INTERVAL_SECONDS` x
:data:`LB_UNHEALTHY_THRESHOLD`) also bound anycast failover (see
:mod:`gpu_fleet.components.failover`): Global Accelerator takes an ALB endpoint's health from them.
The accelerator knows one health per ALB, and the ALB serves every model of the region,
so anycast mode fails over per region, not per model.

With the gateway (``gateway.enabled``, the default; :mod:`gpu_fleet.components.gateway`) the path is
Ingress -> gateway -> vLLM: ``/v1`` goes to the model Service's ``gateway`` port, a LiteLLM
proxy in the same pod that checks the API key, answers repeated requests from the regional
cache and forwards the rest to vLLM over the pod's loopback; ``/health`` still goes to
vLLM's port, so each model's health (and failover) is unchanged. The load balancer's own
checks also probe vLLM's ``/health`` on every target group: on AWS the Ingress's
``alb.ingress.kubernetes.io/healthcheck-port`` is the vLLM port (a number: the pod port
with IP targets; aws-load-balancer-controller@v2.12.0 ``docs/guide/ingress/annotations.md``
"healthcheck-port"), on GCP the BackendConfig's ``healthCheck.port``, which GKE turns into
a ``USE_FIXED_PORT`` health check on that port (kubernetes/ingress-gce@v1.41.1
``pkg/translator/healthchecks.go`` ``UpdateFromBackendConfig``), supported for
``GCE_VM_IP_PORT`` NEGs behind proxy load balancers (Compute API,
``HTTPHealthCheck.PortSpecification``); vLLM's port is itself a NEG port of the Ingress
(``/health``), so the firewall rule the controller opens for the checkers should cover it
(unverified). The ingress
NetworkPolicy admits the load balancer on both ports; vLLM's port 8000 stays reachable from
the load balancer only for ``/health`` (the Ingress routes nothing else there).

The decisions are plain functions below, tested without Pulumi; the class wires them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Any, Optional, Protocol, Sequence, TypedDict, Union

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from .aws_cluster import INGRESS_CLASS as ALB_INGRESS_CLASS
from .config import EntrypointConfig, ModelConfig, RegionConfig
from .contract import FLEET_LABELS, VLLM_POD_LABELS
from .monitoring_rules import MONITORING_NAMESPACE
from .network import AwsNetwork, GcpNetwork

#: Names of the Kubernetes objects in the serving namespace.
INGRESS_NAME = "llm-entrypoint"
BACKEND_CONFIG_NAME = "vllm-backend"
FRONTEND_CONFIG_NAME = "llm-entrypoint"
MANAGED_CERTIFICATE_NAME = "llm-entrypoint"
#: vLLM's health endpoint (200 once the engine is up; no API key needed).
HEALTH_PATH = "/health"
#: The OpenAI API, which vLLM's API key guards in every release (see the module docstring).
API_PATH = "/v1"
#: The only (path, pathType) pairs the load balancers route to vLLM.
PUBLIC_PATHS = ((API_PATH, "Prefix"), (HEALTH_PATH, "Exact"))
#: The NetworkPolicy admitting only the load balancer and Prometheus to the vLLM pods.
INGRESS_POLICY_NAME = "vllm-ingress"
#: GCP: Google Front End proxies and health checkers of the global external Application
#: Load Balancer (Cloud Load Balancing, "Firewall rules").
GCP_LB_SOURCE_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
#: Prometheus pods carry this label (prometheus-operator sets
#: ``app.kubernetes.io/name=prometheus``; its e2e tests select the pods by it).
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
#: Route 53's health checkers as an AWS-managed prefix list, per region.
ROUTE53_HEALTHCHECK_PREFIX_LIST = "com.amazonaws.{region}.route53-healthchecks"
#: The ``getIpRanges`` service name of Route 53's health checkers.
ROUTE53_HEALTHCHECK_SERVICE = "route53_healthchecks"
#: The AWS provider that reads ip-ranges.json on GCP needs some region; the file is global.
IP_RANGES_AWS_REGION = "us-east-1"
HTTPS_PORT = 443
#: The load balancer's checks on the pods: a pod leaves after 2 failures 5 s apart.
LB_CHECK_INTERVAL_SECONDS = 5
LB_CHECK_TIMEOUT_SECONDS = 3
LB_HEALTHY_THRESHOLD = 2
LB_UNHEALTHY_THRESHOLD = 2
#: A non-streamed completion of tens of thousands of tokens can take minutes; ALB idle
#: timeout defaults to 60 s and the GCP backend service timeout to 30 s.
REQUEST_TIMEOUT_SECONDS = 600
#: AWS's recommended policy: TLS 1.3 and 1.2 with forward secrecy.
ALB_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ALB_NAME_MAX = 32
GKE_INGRESS_CLASS = "gce"
#: Cloud Armor accepts at most ten source ranges per rule; the default rule is last.
CLOUD_ARMOR_RANGES_PER_RULE = 10
CLOUD_ARMOR_FIRST_PRIORITY = 1000
#: The health checkers' rules come after the configured ranges' (at most 1000 rules each).
CLOUD_ARMOR_CHECKER_PRIORITY = 2000
CLOUD_ARMOR_DEFAULT_PRIORITY = 2147483647
#: GKE creates the load balancer after the Ingress; it often takes over ten minutes.
GKE_INGRESS_CREATE_TIMEOUT = "30m"
_LABELS = {**FLEET_LABELS, "app.kubernetes.io/component": "entrypoint"}


class ServedModel(Protocol):
    """What the entry point needs of a model deployment."""

    model: ModelConfig
    #: The model's Service in the serving namespace.
    service_name: pulumi.Output[str]
    #: The Service port vLLM answers on (plain HTTP inside the cluster).
    service_port: int
    #: The Service port of the gateway in front of vLLM, where ``/v1`` goes (None: none).
    gateway_port: Optional[int]


class EntrypointArgs(TypedDict):
    """Arguments of :class:`Entrypoint`.

    config: the validated region config; used: ``cloud``, ``location``, ``namespace`` and
        ``entrypoint`` (``domain``, ``aliases`` (default none), ``certificate`` (required
        on AWS; on GCP default a Google-managed certificate), ``allowedCidrs`` (required)).
        An invalid ``entrypoint`` section raises ValueError.
    models: the region's model deployments (``gpu_fleet.components.model_deployment.ModelDeployment``
        or anything with ``model``, ``service_name`` and ``service_port``); none: no load
        balancer is created.
    network: the cluster's network; on AWS the ALB goes in its public subnets, whose CIDRs
        the model pods' ingress NetworkPolicy admits.
    """

    config: RegionConfig
    models: Sequence[ServedModel]
    network: Union[AwsNetwork, GcpNetwork]


# --------------------------------------------------------------------------- pure decisions


def model_hostnames(domain: str, models: Sequence[str]) -> dict[str, str]:
    """Each model's regional hostname, ``<model>.<domain>``."""
    return {m: f"{m}.{domain}" for m in models}


def hostnames(entry: EntrypointConfig, model: str) -> list[str]:
    """Every name a model answers to here: the regional one, then one per alias."""
    return [f"{model}.{domain}" for domain in (entry.domain, *entry.aliases)]


def alb_name(project: str, stack: str) -> str:
    """The ALB's name, fixed per project and stack so the region can look it up.

    ALB names: at most 32 letters, digits and hyphens, no hyphen at either end, not
    starting with ``internal-``. A name too long keeps its start and gets a short hash.
    """
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"{project}-{stack}".lower())).strip("-")
    if name.startswith("internal-"):
        name = "lb-" + name
    if len(name) <= ALB_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: ALB_NAME_MAX - 7].rstrip('-')}-{digest}"


def allows_everyone(cidrs: Sequence[ipaddress.IPv4Network]) -> bool:
    return any(c.prefixlen == 0 for c in cidrs)


def route53_prefix_list_name(region: str) -> str:
    """The AWS-managed prefix list of Route 53's health checkers in ``region``."""
    return ROUTE53_HEALTHCHECK_PREFIX_LIST.format(region=region)


def alb_annotations(entry: EntrypointConfig, lb_name: str, public_subnet_ids: Sequence[str],
                    health_checker_prefix_list: Optional[str] = None,
                    health_port: Optional[int] = None) -> dict[str, str]:
    """AWS Load Balancer Controller annotations of the Ingress.

    ``health_checker_prefix_list``: the ID of the Route 53 health checkers' prefix list,
    admitted beside ``allowedCidrs`` when those are restricted (None: everyone anyway).
    ``health_port``: the pod port every target group checks ``/health`` on (vLLM's, when
    ``/v1`` goes to the gateway's port); None: each target group's traffic port.
    """
    prefix = "alb.ingress.kubernetes.io"
    out = {
        f"{prefix}/load-balancer-name": lb_name,
        f"{prefix}/scheme": "internet-facing",
        # Pods are targets directly (no NodePort hop); the controller opens the pod port.
        f"{prefix}/target-type": "ip",
        f"{prefix}/subnets": ",".join(public_subnet_ids),
        f"{prefix}/listen-ports": json.dumps([{"HTTPS": HTTPS_PORT}]),
        f"{prefix}/certificate-arn": entry.certificate or "",
        f"{prefix}/ssl-policy": ALB_SSL_POLICY,
        f"{prefix}/inbound-cidrs": ",".join(str(c) for c in entry.allowed_cidrs),
        f"{prefix}/backend-protocol": "HTTP",
        f"{prefix}/healthcheck-protocol": "HTTP",
        f"{prefix}/healthcheck-path": HEALTH_PATH,
        f"{prefix}/healthcheck-interval-seconds": str(LB_CHECK_INTERVAL_SECONDS),
        f"{prefix}/healthcheck-timeout-seconds": str(LB_CHECK_TIMEOUT_SECONDS),
        f"{prefix}/healthy-threshold-count": str(LB_HEALTHY_THRESHOLD),
        f"{prefix}/unhealthy-threshold-count": str(LB_UNHEALTHY_THRESHOLD),
        f"{prefix}/success-codes": "200",
        f"{prefix}/load-balancer-attributes": f"idle_timeout.timeout_seconds={REQUEST_TIMEOUT_SECONDS}",
        f"{prefix}/tags": ",".join(f"{k}={v}" for k, v in FLEET_LABELS.items()),
    }
    if health_checker_prefix_list:
        out[f"{prefix}/security-group-prefix-lists"] = health_checker_prefix_list
    if health_port is not None:
        # The gateway's target group too checks vLLM's /health: the model's readiness.
        out[f"{prefix}/healthcheck-port"] = str(health_port)
    return out


def gke_annotations(entry: EntrypointConfig, address_name: str) -> dict[str, str]:
    """GKE Ingress annotations: class, static IP, certificate, frontend, HTTPS only."""
    out = {
        "kubernetes.io/ingress.class": GKE_INGRESS_CLASS,
        "kubernetes.io/ingress.global-static-ip-name": address_name,
        "kubernetes.io/ingress.allow-http": "false",
        "networking.gke.io/v1beta1.FrontendConfig": FRONTEND_CONFIG_NAME,
    }
    if entry.certificate:
        out["ingress.gcp.kubernetes.io/pre-shared-cert"] = entry.certificate
    else:
        out["networking.gke.io/managed-certificates"] = MANAGED_CERTIFICATE_NAME
    return out


def service_annotations(cfg: RegionConfig) -> dict[str, str]:
    """Annotations every model Service needs for the entry point (empty on AWS).

    GKE: container-native load balancing (a NEG, so the load balancer reaches pods, not
    nodes) and the shared BackendConfig (health check, timeout, Cloud Armor).
    """
    if cfg.cloud != "gcp":
        return {}
    return {
        "cloud.google.com/neg": json.dumps({"ingress": True}),
        "cloud.google.com/backend-config": json.dumps({"default": BACKEND_CONFIG_NAME}),
    }


def ingress_spec(ingress_class: Optional[str],
                 backends: Sequence[tuple[Sequence[str], Any, int, Optional[int]]]) -> dict:
    """One host rule per hostname, only :data:`PUBLIC_PATHS` to that model's Service.

    ``backends``: ``(hostnames, service name, vLLM port, gateway port or None)`` per model;
    ``/v1`` goes to the gateway's port when there is one, ``/health`` always to vLLM's. No
    default backend: an unknown hostname or any other path gets the load balancer's 404.
    """
    def port_for(path: str, vllm: int, gateway: Optional[int]) -> int:
        return gateway if path == API_PATH and gateway is not None else vllm

    rules = [
        {
            "host": host,
            "http": {"paths": [
                {"path": path, "pathType": path_type,
                 "backend": {"service": {"name": service, "port": {"number": port_for(path, port, gateway)}}}}
                for path, path_type in PUBLIC_PATHS
            ]},
        }
        for hosts, service, port, gateway in backends
        for host in hosts
    ]
    spec: dict = {"rules": rules}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return spec


def managed_certificate_domains(entry: EntrypointConfig, models: Sequence[str]) -> list[str]:
    """Every hostname, for a Google-managed certificate (no wildcards there)."""
    return [host for m in models for host in hostnames(entry, m)]


def _allow_rules(ranges: Sequence[str], first_priority: int, description: str) -> list[dict]:
    """Cloud Armor allow rules of at most ten ranges each, from ``first_priority`` on."""
    chunks = [ranges[i : i + CLOUD_ARMOR_RANGES_PER_RULE] for i in range(0, len(ranges), CLOUD_ARMOR_RANGES_PER_RULE)]
    return [
        {
            "action": "allow",
            "priority": first_priority + i,
            "match": {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": list(chunk)}},
            "description": description,
        }
        for i, chunk in enumerate(chunks)
    ]


def cloud_armor_rules(cidrs: Sequence[ipaddress.IPv4Network], health_checkers: Sequence[str] = ()) -> list[dict]:
    """Allow the given source ranges and the global routing's health checkers (ten
    ranges per rule), deny everything else with 403."""
    rules = _allow_rules([str(c) for c in cidrs], CLOUD_ARMOR_FIRST_PRIORITY, "entrypoint.allowedCidrs")
    rules += _allow_rules(sorted(set(health_checkers)), CLOUD_ARMOR_CHECKER_PRIORITY, "Route 53 health checkers")
    rules.append({
        "action": "deny(403)",
        "priority": CLOUD_ARMOR_DEFAULT_PRIORITY,
        "match": {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}},
        "description": "default: deny every other source",
    })
    return rules


def model_ingress_policy_spec(load_balancer_sources: Sequence[str], ports: Sequence[int]) -> dict:
    """NetworkPolicy spec: the vLLM pods accept connections on ``ports`` only from the load
    balancer's source ranges and from Prometheus (namespace ``monitoring``); every other
    pod and address is refused. The node's own traffic (kubelet probes) is always allowed
    by the policy engines (module docstring)."""
    allowed = [{"protocol": "TCP", "port": p} for p in sorted(set(ports))]
    return {
        "podSelector": {"matchLabels": dict(VLLM_POD_LABELS)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"ipBlock": {"cidr": str(c)}} for c in load_balancer_sources],
             "ports": allowed},
            {"from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}},
                "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
            }], "ports": allowed},
        ],
    }


def backend_config_spec(health_port: int, security_policy: Optional[Any]) -> dict:
    """GKE BackendConfig: the load balancer's health check on the pods, request timeout
    and (optionally) the Cloud Armor policy's name."""
    spec: dict = {
        "healthCheck": {
            "type": "HTTP",
            "requestPath": HEALTH_PATH,
            "port": health_port,
            "checkIntervalSec": LB_CHECK_INTERVAL_SECONDS,
            "timeoutSec": LB_CHECK_TIMEOUT_SECONDS,
            "healthyThreshold": LB_HEALTHY_THRESHOLD,
            "unhealthyThreshold": LB_UNHEALTHY_THRESHOLD,
        },
        "timeoutSec": REQUEST_TIMEOUT_SECONDS,
    }
    if security_policy is not None:
        spec["securityPolicy"] = {"name": security_policy}
    return spec


# --------------------------------------------------------------------------- component


class Entrypoint(pulumi.ComponentResource):
    """The region's load balancer in front of its models (``gpufleet:index:Entrypoint``).

    Uses the ``kubernetes`` provider and the region's cloud provider (``aws`` or ``gcp``)
    passed in ``opts.providers``. After construction: ``model_hostnames`` (model to
    ``<model>.<domain>``), and the load balancer's address: on AWS ``hostname`` (ALB DNS
    name), ``zone_id`` and ``arn``; on GCP ``ip``; the other cloud's attributes are None.
    With models it also creates the ``vllm-ingress`` NetworkPolicy (``ingress_policy``).
    """

    model_hostnames: dict[str, str]
    hostname: Optional[pulumi.Output[str]] = None
    zone_id: Optional[pulumi.Output[str]] = None
    arn: Optional[pulumi.Output[str]] = None
    ip: Optional[pulumi.Output[str]] = None

    def __init__(self, name: str, args: EntrypointArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpufleet:index:Entrypoint", name, None, opts)
        cfg, models = args["config"], list(args["models"])
        entry = cfg.entrypoint
        problems = entry.problems(cfg.cloud, cfg.location, [m.model.name for m in models])
        if problems:
            raise ValueError(f"{name}: " + "; ".join(f"{p.path}: {p.message}" for p in problems))
        self.config = cfg
        self.model_hostnames = model_hostnames(entry.domain, [m.model.name for m in models])
        if models:
            # The namespace as an output of the Services: objects in it wait for them (and
            # so for the namespace itself).
            namespace = pulumi.Output.all(*[m.service_name for m in models]).apply(lambda _: cfg.namespace)
            backends = [(hostnames(entry, m.model.name), m.service_name, m.service_port, m.gateway_port)
                        for m in models]
            if cfg.cloud == "aws":
                network: AwsNetwork = args["network"]  # type: ignore[assignment]
                self._aws(name, cfg, backends, namespace, network)
                sources: pulumi.Input[Sequence[str]] = network.public_subnet_cidrs
            else:
                self._gcp(name, cfg, models, backends, namespace)
                sources = list(GCP_LB_SOURCE_RANGES)
            ports = [m.service_port for m in models] + [m.gateway_port for m in models if m.gateway_port]
            self.ingress_policy = k8s.networking.v1.NetworkPolicy(
                f"{name}-vllm-ingress",
                metadata={"name": INGRESS_POLICY_NAME, "namespace": namespace,
                          "labels": {**_LABELS, "app.kubernetes.io/name": INGRESS_POLICY_NAME}},
                spec=pulumi.Output.from_input(sources).apply(lambda s: model_ingress_policy_spec(s, ports)),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"modelHostnames": self.model_hostnames, "hostname": self.hostname, "ip": self.ip})

    def _aws(self, name: str, cfg: RegionConfig, backends: list, namespace: pulumi.Output[str],
             network: AwsNetwork) -> None:
        lb_name = alb_name(pulumi.get_project(), pulumi.get_stack())
        checkers: pulumi.Input[Optional[str]] = None
        if not allows_everyone(cfg.entrypoint.allowed_cidrs):
            checkers = aws.ec2.get_managed_prefix_list_output(
                name=route53_prefix_list_name(cfg.location), opts=pulumi.InvokeOutputOptions(parent=self)
            ).id
        health_port = backends[0][2] if any(b[3] is not None for b in backends) else None
        annotations = pulumi.Output.all(network.public_subnet_ids, checkers).apply(
            lambda v: alb_annotations(cfg.entrypoint, lb_name, v[0], v[1], health_port)
        )
        self.ingress = k8s.networking.v1.Ingress(
            name,
            metadata={"name": INGRESS_NAME, "namespace": namespace, "labels": _LABELS, "annotations": annotations},
            spec=ingress_spec(ALB_INGRESS_CLASS, backends),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Pulumi waits for the Ingress to get its load balancer; then the ALB exists.
        lb = aws.lb.get_load_balancer_output(
            name=lb_name, opts=pulumi.InvokeOutputOptions(parent=self, depends_on=[self.ingress])
        )
        self.hostname, self.zone_id, self.arn = lb.dns_name, lb.zone_id, lb.arn

    def _gcp(self, name: str, cfg: RegionConfig, models: list, backends: list, namespace: pulumi.Output[str]) -> None:
        entry = cfg.entrypoint
        here = pulumi.ResourceOptions(parent=self)
        ports = {m.service_port for m in models}
        if len(ports) != 1:
            raise ValueError(f"{name}: the models' Services use ports {sorted(ports)}; the shared BackendConfig "
                             "health check needs one")
        address = gcp.compute.GlobalAddress(
            f"{name}-ip", address_type="EXTERNAL", ip_version="IPV4",
            description=f"{name}: the region's load balancer", opts=here,
        )
        ssl_policy = gcp.compute.SSLPolicy(
            f"{name}-tls", profile="MODERN", min_tls_version="TLS_1_2",
            description=f"{name}: TLS 1.2 and later", opts=here,
        )
        security_policy = None
        if not allows_everyone(entry.allowed_cidrs):
            # ip-ranges.json is global; any region's endpoint serves it.
            ranges_provider = aws.Provider(f"{name}-ip-ranges", region=IP_RANGES_AWS_REGION, opts=here)
            checkers = aws.get_ip_ranges_output(
                services=[ROUTE53_HEALTHCHECK_SERVICE],
                opts=pulumi.InvokeOutputOptions(parent=self, provider=ranges_provider),
            ).cidr_blocks
            security_policy = gcp.compute.SecurityPolicy(
                f"{name}-sources", type="CLOUD_ARMOR",
                rules=checkers.apply(lambda c: cloud_armor_rules(entry.allowed_cidrs, c)),
                description=f"{name}: entrypoint.allowedCidrs and the Route 53 health checkers only", opts=here,
            )
        objects = [
            k8s.apiextensions.CustomResource(
                f"{name}-backend", api_version="cloud.google.com/v1", kind="BackendConfig",
                metadata={"name": BACKEND_CONFIG_NAME, "namespace": namespace, "labels": _LABELS},
                spec=backend_config_spec(next(iter(ports)), security_policy.name if security_policy else None),
                opts=here,
            ),
            k8s.apiextensions.CustomResource(
                f"{name}-frontend", api_version="networking.gke.io/v1beta1", kind="FrontendConfig",
                metadata={"name": FRONTEND_CONFIG_NAME, "namespace": namespace, "labels": _LABELS},
                spec={"sslPolicy": ssl_policy.name},
                opts=here,
            ),
        ]
        if not entry.certificate:
            objects.append(k8s.apiextensions.CustomResource(
                f"{name}-certificate", api_version="networking.gke.io/v1", kind="ManagedCertificate",
                metadata={"name": MANAGED_CERTIFICATE_NAME, "namespace": namespace, "labels": _LABELS},
                spec={"domains": managed_certificate_domains(entry, [m.model.name for m in models])},
                opts=here,
            ))
        self.ingress = k8s.networking.v1.Ingress(
            name,
            metadata={
                "name": INGRESS_NAME, "namespace": namespace, "labels": _LABELS,
                "annotations": address.name.apply(lambda n: gke_annotations(entry, n)),
            },
            spec=ingress_spec(None, backends),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=objects, custom_timeouts=pulumi.CustomTimeouts(create=GKE_INGRESS_CREATE_TIMEOUT)
            ),
        )
        self.ip = address.address

    def exports(self) -> dict[str, Any]:
        """The region stack outputs the global stack reads (one name per thing)."""
        entry = self.config.entrypoint
        return {
            "entrypointHostname": self.hostname,
            "entrypointIp": self.ip,
            "entrypointZoneId": self.zone_id,
            "entrypointArn": self.arn,
            "healthPath": HEALTH_PATH,
            "healthPort": HTTPS_PORT,
            "domain": entry.domain,
            "aliases": list(entry.aliases),
            "modelHostnames": self.model_hostnames,
        }
