"""What a real ``pulumi preview`` / ``up`` of a stack needs beyond its own config, checked offline.

- **Secrets source**: each required secret (``gpu_fleet.components.config.SECRET_KEYS``) comes either
  from a ``secure:`` value in the stack file (encrypted by the stack's secrets provider) or
  from the Pulumi ESC environments the stack file imports with its top-level
  ``environment:`` list, which expose stack config under ``values.pulumiConfig`` (Pulumi
  docs, "Use Pulumi ESC with Pulumi IaC": https://www.pulumi.com/docs/esc/guides/pulumi-iac/).
  What an environment holds cannot be read offline: the report says which source a stack
  relies on and warns when a secret has none (``pulumi preview`` then stops at the first
  ``require_secret``).
- **Endpoint reachability**: the cluster API is private, and public only to
  ``cluster.publicAccessCidrs``; given the deployer's network (a CI runner's fixed egress
  range, or an address inside the VPC for self-hosted runners), say when it cannot reach it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from gpu_fleet.components.config import PROJECT, SECRET_KEYS, ConfigError, Problem, RegionConfig, StackFile

#: The stack file's top-level key listing the ESC environments it imports.
ENVIRONMENT_KEY = "environment"
#: Where the deployer's network comes from when ``--deployer-cidr`` is not given (CI sets it
#: from the ``RUNNER_EGRESS_CIDRS`` repository variable): CIDRs separated by commas or spaces.
DEPLOYER_CIDRS_ENV = "GPU_FLEET_DEPLOYER_CIDRS"
STACK_FILE_SOURCE = "stack file (secure)"
ESC_SOURCE = "ESC environment"


def stack_environments(path: Path) -> tuple[str, ...]:
    """The ESC environments ``path`` imports (its ``environment:`` list; none if absent)."""
    doc = yaml.safe_load(path.read_text()) or {}
    envs: Any = doc.get(ENVIRONMENT_KEY) if isinstance(doc, dict) else None
    if envs is None:
        return ()
    if not isinstance(envs, list) or not all(isinstance(e, str) and e.strip() for e in envs):
        raise ConfigError(str(path), [Problem(ENVIRONMENT_KEY, "must be a list of ESC environment names "
                                              "(project/environment), e.g. [gpu-fleet/us-east]")])
    return tuple(envs)


@dataclass(frozen=True)
class SecretsReport:
    """Where each required secret of one stack comes from (``None``: nowhere)."""

    environments: tuple[str, ...]
    sources: dict[str, Optional[str]]

    @property
    def missing(self) -> list[str]:
        return [k for k, source in self.sources.items() if source is None]

    def summary(self) -> str:
        """One line: which source the stack uses."""
        if not self.sources:
            return "none required"
        used = sorted({s for s in self.sources.values() if s})
        parts = [f"{ESC_SOURCE} {', '.join(self.environments)} (pulumiConfig must map them; not checkable offline)"
                 if s == ESC_SOURCE else s for s in used]
        return "; ".join(parts) if parts else "no source"

    def warnings(self, stack_file: str) -> list[str]:
        return [
            f"secret {key} has no source: neither a `secure:` value in {stack_file} nor an ESC environment "
            f"imported by its `{ENVIRONMENT_KEY}:` list; pulumi preview and up stop with \"Missing required "
            f"configuration variable\" (pulumi config set --secret {key} ..., or import an environment)"
            for key in self.missing
        ]

    def to_json(self) -> dict:
        return {"environments": list(self.environments), "sources": self.sources, "missing": self.missing}


def secrets_report(sf: StackFile, kind: str, environments: tuple[str, ...]) -> SecretsReport:
    """The source of each secret a ``kind`` (region/global) stack needs. A ``secure:`` value in
    the stack file is reported first: it is what the stack itself sets."""
    sources: dict[str, Optional[str]] = {}
    for key in SECRET_KEYS[kind]:
        full = f"{PROJECT}:{key}"
        sources[full] = STACK_FILE_SOURCE if full in sf.secret_keys else (ESC_SOURCE if environments else None)
    return SecretsReport(environments, sources)


def parse_cidrs(text: str, source: str) -> list[ipaddress.IPv4Network]:
    """CIDRs separated by commas or whitespace; ConfigError naming ``source`` on a bad one."""
    out = []
    for item in text.replace(",", " ").split():
        try:
            out.append(ipaddress.IPv4Network(item, strict=False))
        except ValueError:
            raise ConfigError(source, [Problem("cidr", f"{item!r} is not an IPv4 CIDR")]) from None
    return out


def endpoint_notes(cfg: RegionConfig, deployer: list[ipaddress.IPv4Network]) -> list[str]:
    """Notes for each deployer network that cannot reach the cluster's API endpoint.

    Reachable: inside one of ``cluster.publicAccessCidrs`` (public endpoint) or
    ``cluster.privateAccessCidrs`` (EKS: admitted by the cluster security group), or inside the
    VPC / node subnetwork (``network.cidr``: the private endpoint; unknown for an existing
    network, where only the public side is checked). That GKE admits the node subnetwork's
    primary range to its private endpoint without listing it is unverified here.
    """
    public = list(cfg.cluster.public_access_cidrs)
    admitted = list(cfg.cluster.private_access_cidrs)
    private = None if cfg.network.existing else cfg.network.cidr
    notes = []
    for net in deployer:
        if any(net.subnet_of(p) for p in public + admitted):
            continue
        if private is not None and net.subnet_of(private):
            if cfg.cloud == "aws":
                notes.append(f"deployer network {net} is inside the VPC, but the EKS cluster security group admits "
                             f"443 only from cluster.privateAccessCidrs: add it there")
            continue
        where = f"publicly only from {', '.join(map(str, public))}" if public else "not publicly at all"
        inside = f"privately from inside {private}" if private else "privately from inside the existing network"
        notes.append(
            f"deployer network {net} cannot reach the cluster API (reachable {where}; {inside}): the Kubernetes "
            f"and Helm steps of pulumi preview/up would fail as unreachable; add it to cluster.publicAccessCidrs "
            f"or run on a runner inside the network")
    return notes
