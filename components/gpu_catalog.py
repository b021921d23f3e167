"""GPU machine shapes and their on-demand prices, per cloud and region.

Pure Python (no Pulumi import) so the stack configuration, the sizing checks and the
simulator can all use it. The facts live in ``data/gpu_shapes.json``: prices per cloud,
region and shape, each region naming its source and retrieval date (``priceSources``,
``sources``), derived prices saying how (``derived``), and the zones offering each shape
(``zones``). Prices move, so that file is the one place to update them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

Cloud = Literal["aws", "gcp"]
GpuKind = Literal["h100", "a100-80gb", "a100-40gb"]

CLOUDS: tuple[Cloud, ...] = ("aws", "gcp")
GPU_KINDS: tuple[GpuKind, ...] = ("h100", "a100-80gb", "a100-40gb")
DATA_FILE = Path(__file__).with_name("data") / "gpu_shapes.json"


class CatalogError(ValueError):
    """A request the catalog cannot satisfy; the message lists the valid choices.

    ``field`` names the request field at fault: ``location``, ``gpu``, ``gpusPerNode``
    or ``machineType`` (the config's camelCase names).
    """

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GpuShape:
    """One machine type with GPUs attached."""

    cloud: Cloud
    machine_type: str
    gpu: GpuKind
    gpus: int
    gpu_memory_gb: int
    vcpus: int
    memory_gb: int
    #: GKE ``guest_accelerator`` type; None on AWS, where the instance type implies it.
    accelerator: Optional[str] = None
    #: False where the shape is sold as Spot / Flex-start only (see the data file's notes).
    on_demand: bool = True


@dataclass(frozen=True)
class Offering:
    """A shape as offered in one region, with its hourly on-demand price in USD."""

    shape: GpuShape
    region: str
    hourly_usd: float
    #: Zones of ``region`` offering the shape (AWS zone IDs, GCP zone names); empty when
    #: the data file does not record them (then nothing is restricted).
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """Shapes per cloud and the price table per cloud and region."""

    shapes: dict[str, dict[str, GpuShape]]
    prices: dict[str, dict[str, dict[str, float]]]
    source: str
    retrieved: str
    #: cloud -> region -> machine type -> zones offering it.
    zones: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)

    def regions(self, cloud: Cloud) -> list[str]:
        return sorted(self.prices.get(cloud, {}))

    def locations(self, cloud: Cloud, gpu: GpuKind, gpus_per_node: Optional[int] = None) -> list[str]:
        """The regions of ``cloud`` with a price for a shape of ``gpu`` (with ``gpus_per_node``
        GPUs, when given), sorted: where a pool of that shape can be planned."""
        shapes = {name for name, s in self.shapes.get(cloud, {}).items()
                  if s.gpu == gpu and gpus_per_node in (None, s.gpus)}
        return sorted(region for region, table in self.prices.get(cloud, {}).items() if shapes & set(table))

    def offerings(self, cloud: Cloud, region: str) -> list[Offering]:
        """Every shape offered in ``region``, in catalog order."""
        table = self.prices.get(cloud, {}).get(region)
        if table is None:
            raise CatalogError(
                f"no GPU offerings recorded for {cloud} region {region!r}; "
                f"known regions: {', '.join(self.regions(cloud))} "
                f"(add the region to {DATA_FILE.name})",
                "location",
            )
        return [
            Offering(shape, region, table[name], self.offered_zones(cloud, region, name))
            for name, shape in self.shapes[cloud].items()
            if name in table
        ]

    def offered_zones(self, cloud: Cloud, region: str, machine_type: str) -> tuple[str, ...]:
        """Zones of ``region`` offering ``machine_type`` (empty: not recorded)."""
        return tuple(self.zones.get(cloud, {}).get(region, {}).get(machine_type, ()))

    def select(
        self,
        cloud: Cloud,
        region: str,
        gpu: GpuKind,
        gpus_per_node: int,
        machine_type: Optional[str] = None,
    ) -> Offering:
        """The offering for ``gpus_per_node`` GPUs of kind ``gpu`` in ``region``.

        ``machine_type`` picks between shapes with the same GPU and count (on GCP
        ``a3-highgpu-8g`` and ``a3-megagpu-8g``); without it the first listed wins.
        Raises CatalogError naming the valid choices; when the region does not offer the
        GPU at all, the choices are the regions that do (:meth:`locations`).
        """
        elsewhere = ", ".join(self.locations(cloud, gpu, gpus_per_node)) or "none"
        if region not in self.prices.get(cloud, {}):
            raise CatalogError(
                f"no GPU offerings recorded for {cloud} region {region!r}; {gpu} x{gpus_per_node} is offered in: "
                f"{elsewhere} (add the region to {DATA_FILE.name} with its source)",
                "location",
            )
        offered = self.offerings(cloud, region)
        same_gpu = [o for o in offered if o.shape.gpu == gpu]
        if not same_gpu:
            kinds = sorted({o.shape.gpu for o in offered})
            raise CatalogError(
                f"{gpu} is not offered in {cloud} {region}; offered there: {', '.join(kinds)}; "
                f"{gpu} x{gpus_per_node} is offered in: {elsewhere}",
                "gpu",
            )
        choices = ", ".join(f"{o.shape.gpus} ({o.shape.machine_type})" for o in same_gpu)
        if machine_type is not None:
            for o in same_gpu:
                if o.shape.machine_type == machine_type:
                    if o.shape.gpus != gpus_per_node:
                        raise CatalogError(
                            f"{machine_type} has {o.shape.gpus} GPUs per node, not {gpus_per_node}; "
                            f"{gpu} shapes in {region}: {choices}",
                            "gpusPerNode",
                        )
                    return o
            raise CatalogError(
                f"machine type {machine_type!r} with {gpu} is not offered in {cloud} {region}; "
                f"valid: {', '.join(o.shape.machine_type for o in same_gpu)}",
                "machineType",
            )
        for o in same_gpu:
            if o.shape.gpus == gpus_per_node:
                return o
        raise CatalogError(
            f"{gpu} with {gpus_per_node} GPUs per node is not offered in {cloud} {region}; "
            f"valid GPUs per node: {choices}",
            "gpusPerNode",
        )


def parse_catalog(raw: dict) -> Catalog:
    """Build a Catalog from the JSON document's structure (used for the data file and tests)."""
    shapes: dict[str, dict[str, GpuShape]] = {}
    for cloud, table in raw["shapes"].items():
        shapes[cloud] = {
            name: GpuShape(
                cloud=cloud,
                machine_type=name,
                gpu=spec["gpu"],
                gpus=spec["gpus"],
                gpu_memory_gb=spec["gpuMemoryGb"],
                vcpus=spec["vcpus"],
                memory_gb=spec["memoryGb"],
                accelerator=spec.get("accelerator"),
                on_demand=spec.get("onDemand", True),
            )
            for name, spec in table.items()
        }
    for cloud, regions in raw["prices"].items():
        for region, table in regions.items():
            unknown = set(table) - set(shapes.get(cloud, {}))
            if unknown:
                raise CatalogError(f"prices for unknown {cloud} shapes in {region}: {sorted(unknown)}", "prices")
    for cloud, regions in raw.get("zones", {}).items():
        for region, table in regions.items():
            unknown = set(table) - set(shapes.get(cloud, {}))
            if unknown:
                raise CatalogError(f"zones for unknown {cloud} shapes in {region}: {sorted(unknown)}", "zones")
    return Catalog(shapes=shapes, prices=raw["prices"], source=raw["source"], retrieved=raw["retrieved"],
                   zones=raw.get("zones", {}))


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The catalog shipped in ``data/gpu_shapes.json``."""
    return parse_catalog(json.loads(DATA_FILE.read_text()))


def offered_zones(cloud: Cloud, region: str, machine_type: str) -> tuple[str, ...]:
    """Zones of ``region`` offering ``machine_type`` in the shipped catalog (empty: not recorded)."""
    return load_catalog().offered_zones(cloud, region, machine_type)


@lru_cache(maxsize=1)
def cache_prices() -> dict:
    """The catalog's ``cachePrices`` section: regional cache prices, read by
    :func:`gpu_fleet.components.cache_settings.cache_hourly_usd`."""
    return json.loads(DATA_FILE.read_text())["cachePrices"]
