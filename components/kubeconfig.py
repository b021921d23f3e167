"""A kubeconfig whose user authenticates through an exec credential plugin.

Both clusters hand out short-lived tokens through a CLI (``aws eks get-token``,
``gke-gcloud-auth-plugin``) rather than a static credential, so the kubeconfig a stack
exports holds no secret of its own beyond the cluster's address.
"""

from __future__ import annotations

from typing import Any

import yaml


def exec_kubeconfig(context: str, server: str, ca_certificate: str, exec_config: dict[str, Any]) -> str:
    """One cluster, one user and one context named ``context``; ``exec_config`` is the
    user's ``exec`` block without its ``apiVersion``."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": ca_certificate}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
            "users": [
                {
                    "name": context,
                    "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", **exec_config}},
                }
            ],
        },
        sort_keys=False,
    )
