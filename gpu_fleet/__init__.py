"""gpu-fleet's tools: offline plan, simulator, tuner."""

from . import sdk_imports

# Before anything imports a provider SDK (the components do): a plan then loads only the
# resource modules it uses.
sdk_imports.install()
