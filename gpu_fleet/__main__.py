"""``python -m gpu_fleet``: the component provider (:mod:`gpu_fleet.provider`).

Pulumi runs a Python plugin that is a buildable package without a top-level ``__main__.py``
as ``python -m pulumi.run.plugin gpu-fleet``, which runs this module when ``gpu_fleet``
itself defines no component classes (pulumi/pulumi sdk/python/cmd/pulumi-language-python
main.go ``RunPlugin``; pulumi ``pulumi/run/plugin/__main__.py`` 3.272.0).
"""

from gpu_fleet.provider import main

main()
