"""The gpu-fleet Pulumi program: a region stack or the global stack, by its config."""

from components.program import main

main()
