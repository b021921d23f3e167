"""The Pulumi program behind ``__main__.py``: read the stack's config, build its stack.

A region stack gets a :class:`~gpu_fleet.components.region.Region`; the global stack gets a
:class:`~gpu_fleet.components.global_routing.GlobalRouting` fed by ``StackReference``s to the
region stacks. Invalid config stops the run before any resource, with one line per
problem naming the stack file and field.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
from pulumi.runtime.config import is_config_secret

from .config import CONFIG_KEY, PROJECT, SECRET_KEYS, ConfigError, GlobalConfig, RegionConfig, parse_fleet

#: Where the stack files live; ``gpu-fleet plan --config FILE`` points it elsewhere.
STACKS_DIR_ENV = "GPU_FLEET_STACKS_DIR"


def stack_file() -> Path:
    return Path(os.environ.get(STACKS_DIR_ENV, "stacks")) / f"Pulumi.{pulumi.get_stack()}.yaml"


def load_config() -> RegionConfig | GlobalConfig:
    path = stack_file()
    raw = pulumi.Config(PROJECT).get_object(CONFIG_KEY)
    try:
        if raw is None:
            raise ConfigError(str(path), [])
        return parse_fleet(raw, str(path), path.parent)
    except ConfigError as e:
        if not e.problems:
            raise pulumi.RunError(f"{path}: {CONFIG_KEY}: missing; put the stack's settings under '{PROJECT}:{CONFIG_KEY}'") from None
        # RunError prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(e)) from None


def check_secrets(kind: str) -> None:
    """A secret set in plaintext (``pulumi config set`` without ``--secret``, or a plain
    value in an ESC environment) stops the run: it would land unencrypted in the state."""
    config = pulumi.Config(PROJECT)
    for key in SECRET_KEYS[kind]:
        full = f"{PROJECT}:{key}"
        if config.get(key) is not None and not is_config_secret(full):
            raise pulumi.RunError(f"{stack_file()}: {full}: set in plaintext; run: pulumi config set --secret {full} "
                                  "<value>")


def main() -> None:
    cfg = load_config()
    check_secrets("region" if isinstance(cfg, RegionConfig) else "global")
    secrets = pulumi.Config(PROJECT)
    if isinstance(cfg, RegionConfig):
        from .region import Region, export_region

        region = Region(
            pulumi.get_stack(),
            {
                "config": cfg,
                "hugging_face_token": secrets.require_secret("huggingFaceToken"),
                "api_key": secrets.require_secret("apiKey"),
            },
        )
        export_region(region)
    else:
        from .global_routing import GlobalRouting, export_global, region_endpoints

        routing = GlobalRouting(
            pulumi.get_stack(),
            {"config": cfg, "regions": region_endpoints(cfg, stacks_dir=stack_file().parent)},
        )
        export_global(routing)
