"""The gpu-fleet Pulumi program: a region stack or the global stack, by its config."""

from gpu_fleet.components.program import main

main()
