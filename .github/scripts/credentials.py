#!/usr/bin/env python3
"""Which cloud identities one Pulumi job gets: its stack's cloud, plus the state backend's.

Least privilege: a job gets the preview/deploy identity of its own stack's cloud only. A
self-managed backend in the *other* cloud (``s3://`` for a GCP stack, ``gs://`` for an AWS
one) adds that cloud's state-only identity (the bucket and, with a KMS secrets provider,
the key; nothing else). Pulumi Cloud (no URL, or an ``https://`` one) needs no cloud
identity for state: the job exchanges its OIDC token with Pulumi Cloud instead.

Reads the environment (never interpolated into a shell), writes ``key=value`` lines to
``$GITHUB_OUTPUT``, and fails with one ``::error::`` line per missing repository variable.

  STACK_CLOUD      aws | gcp
  BACKEND_URL      empty, https://..., s3://..., gs://...
  AWS_ROLE_ARN, GCP_SERVICE_ACCOUNT              the stack cloud's identity
  AWS_STATE_ROLE_ARN, GCP_STATE_SERVICE_ACCOUNT  state-only identities
"""

from __future__ import annotations

import os
import sys

#: Object-storage backend URL schemes (Pulumi docs, "Using a DIY backend":
#: https://www.pulumi.com/docs/iac/operations/stack-management/using-a-diy-backend/) and the
#: cloud whose credentials each needs.
BACKEND_CLOUDS = {"s3://": "aws", "gs://": "gcp"}
#: Repository variables the workflows pass in, by cloud and role, for error messages.
VARIABLES = {("aws", "stack"): "AWS_PREVIEW_ROLE_ARN / AWS_DEPLOY_ROLE_ARN",
             ("gcp", "stack"): "GCP_PREVIEW_SERVICE_ACCOUNT / GCP_DEPLOY_SERVICE_ACCOUNT",
             ("aws", "state"): "AWS_STATE_ROLE_ARN", ("gcp", "state"): "GCP_STATE_SERVICE_ACCOUNT"}


def decide(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(outputs, errors): ``aws-role-arn``, ``gcp-service-account`` (empty: none for this job)
    and ``pulumi-cloud`` (true/false)."""
    cloud = env.get("STACK_CLOUD", "")
    url = env.get("BACKEND_URL", "").strip()
    errors: list[str] = []
    if cloud not in ("aws", "gcp"):
        return {}, [f"STACK_CLOUD must be aws or gcp, got {cloud!r}"]
    backend_cloud = next((c for scheme, c in BACKEND_CLOUDS.items() if url.startswith(scheme)), None)
    if url and backend_cloud is None and not url.startswith("https://"):
        errors.append(f"PULUMI_BACKEND_URL {url!r}: use s3://..., gs://..., an https:// Pulumi Cloud URL, "
                      f"or nothing (Pulumi Cloud)")
    identity = {"aws": env.get("AWS_ROLE_ARN", ""), "gcp": env.get("GCP_SERVICE_ACCOUNT", "")}
    state = {"aws": env.get("AWS_STATE_ROLE_ARN", ""), "gcp": env.get("GCP_STATE_SERVICE_ACCOUNT", "")}
    chosen = {"aws": "", "gcp": ""}
    chosen[cloud] = identity[cloud]
    if not chosen[cloud]:
        errors.append(f"{VARIABLES[(cloud, 'stack')]} is not set: the {cloud} stack needs it")
    if backend_cloud and backend_cloud != cloud:
        chosen[backend_cloud] = state[backend_cloud]
        if not chosen[backend_cloud]:
            errors.append(f"{VARIABLES[(backend_cloud, 'state')]} is not set: the {url} state backend needs "
                          f"{backend_cloud} credentials in this {cloud} job")
    outputs = {"aws-role-arn": chosen["aws"], "gcp-service-account": chosen["gcp"],
               "pulumi-cloud": "true" if backend_cloud is None else "false"}
    return outputs, errors


def main() -> int:
    outputs, errors = decide(dict(os.environ))
    for error in errors:
        print(f"::error::{error}")
    if errors:
        return 1
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        for key, value in outputs.items():
            out.write(f"{key}={value}\n")
    print(", ".join(f"{k}: {v or '-'}" for k, v in outputs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
