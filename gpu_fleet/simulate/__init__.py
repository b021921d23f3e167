"""``gpu-fleet simulate``: replay traffic against a stack's HPA with a port of the
Kubernetes HPA controller, a serving model of vLLM replicas, and an oracle to compare with.

Modules: :mod:`.controller` (the HPA, v1.33), :mod:`.serving` (load to queue, utilisation
and metrics), :mod:`.traces` (built-in and CSV traffic), :mod:`.run` (the loop and the
oracle), :mod:`.report` (summary and plot), :mod:`.cli` (the subcommand).
"""
