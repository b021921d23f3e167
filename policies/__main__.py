"""The gpu-fleet policy pack, for ``pulumi preview --policy-pack policies`` (and ``up``).

Pulumi runs a Python pack from this folder with ``python -m pulumi.policy <engine> .``
in the pack's own virtualenv (``.venv`` here, built from ``requirements.txt``: ``cd
policies && python -m venv .venv && .venv/bin/pip install -r requirements.txt``, or
``pulumi install`` in this folder). ``runpy`` runs this file with the folder first on
``sys.path``, which is how ``rules`` is found. Constructing the ``PolicyPack`` serves the
analyzer over gRPC until Pulumi stops it, so nothing else may import this file; the
offline evaluation (``gpu_fleet.policy_check``) loads ``rules.py`` instead.

Thresholds and enforcement levels are tuned per policy with
``--policy-pack-config <file>``, e.g. ``{"hpa-min-replicas": {"minReplicas": 3}}``.
"""

from pulumi_policy import PolicyPack

from rules import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES)
