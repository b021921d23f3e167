"""The GPU catalog: every shape the issue names, every rejection, and the data file."""

from __future__ import annotations

import json
import re

import pytest

from gpu_fleet.components.gpu_catalog import DATA_FILE, CatalogError, load_catalog, parse_catalog

# (cloud, machine type, gpu, gpus, GPU memory GB, accelerator)
SHAPES = [
    ("aws", "p5.48xlarge", "h100", 8, 80, None),
    ("aws", "p4d.24xlarge", "a100-40gb", 8, 40, None),
    ("aws", "p4de.24xlarge", "a100-80gb", 8, 80, None),
    *[("gcp", f"a3-highgpu-{n}g", "h100", n, 80, "nvidia-h100-80gb") for n in (1, 2, 4, 8)],
    ("gcp", "a3-megagpu-8g", "h100", 8, 80, "nvidia-h100-mega-80gb"),
    *[("gcp", f"a2-highgpu-{n}g", "a100-40gb", n, 40, "nvidia-tesla-a100") for n in (1, 2, 4, 8)],
    *[("gcp", f"a2-ultragpu-{n}g", "a100-80gb", n, 80, "nvidia-a100-80gb") for n in (1, 2, 4, 8)],
]


@pytest.mark.parametrize("cloud,machine,gpu,gpus,mem,accel", SHAPES, ids=[s[1] for s in SHAPES])
def test_every_shape(cloud, machine, gpu, gpus, mem, accel):
    shape = load_catalog().shapes[cloud][machine]
    assert (shape.gpu, shape.gpus, shape.gpu_memory_gb, shape.accelerator) == (gpu, gpus, mem, accel)
    assert shape.vcpus > 0 and shape.memory_gb > 0


def test_catalog_has_exactly_the_named_shapes():
    catalog = load_catalog()
    assert {(c, m) for c, t in catalog.shapes.items() for m in t} == {(s[0], s[1]) for s in SHAPES}


def test_data_file_records_source_and_date():
    raw = json.loads(DATA_FILE.read_text())
    assert "pricing" in raw["source"] and raw["retrieved"].startswith("20")


def test_reference_prices():
    catalog = load_catalog()
    assert catalog.select("aws", "us-east-1", "h100", 8).hourly_usd == 55.04
    assert catalog.select("gcp", "europe-west4", "h100", 8, "a3-highgpu-8g").hourly_usd == 112.54
    assert catalog.select("gcp", "europe-west4", "h100", 8, "a3-megagpu-8g").hourly_usd == 118.24
    assert catalog.select("gcp", "us-east4", "a100-80gb", 8).hourly_usd == 45.66


def test_select_without_machine_type_takes_the_first_listed():
    assert load_catalog().select("gcp", "europe-west4", "h100", 8).shape.machine_type == "a3-highgpu-8g"


def test_h100_with_three_gpus_on_aws():
    with pytest.raises(CatalogError) as exc:
        load_catalog().select("aws", "us-east-1", "h100", 3)
    assert exc.value.field == "gpusPerNode"
    assert "valid GPUs per node: 8 (p5.48xlarge)" in str(exc.value)


def test_unknown_region_lists_the_regions_offering_the_shape():
    with pytest.raises(CatalogError) as exc:
        load_catalog().select("gcp", "asia-south1", "a100-80gb", 8)
    assert exc.value.field == "location"
    assert "a100-80gb x8 is offered in: europe-west4, us-east4 (add the region" in str(exc.value)


def test_region_without_the_gpu_lists_where_it_is_offered():
    with pytest.raises(CatalogError) as exc:
        load_catalog().select("aws", "sa-east-1", "a100-80gb", 8)
    assert exc.value.field == "gpu"
    assert str(exc.value) == ("a100-80gb is not offered in aws sa-east-1; offered there: a100-40gb, h100; a100-80gb x8 "
                              "is offered in: ap-northeast-1, ap-southeast-1, eu-central-1, il-central-1, us-east-1, "
                              "us-west-2")


def test_locations_of_a_shape():
    catalog = load_catalog()
    assert catalog.locations("gcp", "a100-40gb", 8) == ["europe-west4", "us-east4"]
    assert catalog.locations("aws", "h100", 3) == []
    h100 = catalog.locations("aws", "h100")
    assert h100 == catalog.locations("aws", "h100", 8) and "sa-east-1" in h100 and "eu-west-1" not in h100


# --------------------------------------------------------------------------- coverage and provenance


def test_catalog_covers_eight_aws_and_six_gcp_locations():
    catalog = load_catalog()
    assert len(catalog.regions("aws")) >= 8 and len(catalog.regions("gcp")) >= 6
    # Every continent with capacity has two or more H100 locations.
    h100 = set(catalog.locations("aws", "h100")) | set(catalog.locations("gcp", "h100"))
    for prefixes in (("us-", "ca-"), ("eu-", "europe-"), ("ap-northeast", "ap-south", "asia-"), ("ap-southeast-2", "australia-")):
        assert len([r for r in h100 if r.startswith(prefixes)]) >= 2, prefixes


def test_every_price_names_its_source_and_date():
    raw = json.loads(DATA_FILE.read_text())
    sources = raw["sources"]
    for source in sources.values():
        assert source["what"] and source["retrieved"].startswith("20")
        assert "ref" not in source or "@" in source["ref"]  # repo@commit path
    for cloud, regions in raw["prices"].items():
        assert set(raw["priceSources"][cloud]) == set(regions), cloud
        assert set(raw["priceSources"][cloud].values()) <= set(sources)


def test_derived_prices_say_how_and_add_up():
    raw = json.loads(DATA_FILE.read_text())
    for cloud, regions in raw["derived"].items():
        for region, shapes in regions.items():
            for shape, how in shapes.items():
                price = raw["prices"][cloud][region][shape]
                assert how.startswith("derived: "), how
                parts = re.search(r"\(([\d.]+) \+ ([\d.]+)\)$", how)
                if parts:  # VM row + GPU row, as read
                    assert round(float(parts[1]) + float(parts[2]), 2) == price, (region, shape)
    # A price from the SkyPilot catalog is never taken as read: each says how it was derived.
    for region, source in raw["priceSources"]["gcp"].items():
        if source == "skypilot-gcp":
            assert set(raw["derived"]["gcp"][region]) == set(raw["prices"]["gcp"][region]), region


def test_zones_table():
    raw = json.loads(DATA_FILE.read_text())
    zones = raw["zones"]
    assert set(zones) == {"aws", "gcp"}
    for cloud, regions in zones.items():
        for region, shapes in regions.items():
            for shape, names in shapes.items():
                assert shape in raw["prices"][cloud][region], (region, shape)
                assert names and names == sorted(set(names))
                if cloud == "aws":  # zone IDs (use1-az4), one prefix per region
                    assert all(re.fullmatch(r"[a-z]+\d-az\d+", z) for z in names), names
                    assert len({z.split("-az")[0] for z in names}) == 1
                else:
                    assert all(z.startswith(region + "-") and len(z) == len(region) + 2 for z in names), names
    for cloud, region in (("aws", "us-east-1"), ("aws", "us-west-2"), ("gcp", "europe-west4"), ("gcp", "us-east4")):
        assert zones[cloud][region], region
    # The reference stack's zones offer its shape.
    assert {"europe-west4-b", "europe-west4-c"} <= set(zones["gcp"]["europe-west4"]["a3-highgpu-8g"])


def test_machine_type_of_another_gpu():
    with pytest.raises(CatalogError) as exc:
        load_catalog().select("gcp", "europe-west4", "h100", 8, "a2-ultragpu-8g")
    assert exc.value.field == "machineType"
    assert "valid: a3-highgpu-1g, a3-highgpu-2g, a3-highgpu-4g, a3-highgpu-8g, a3-megagpu-8g" in str(exc.value)


def test_a100_80gb_in_a_region_table_without_it():
    raw = json.loads(DATA_FILE.read_text())
    raw["prices"]["aws"]["us-east-1"].pop("p4de.24xlarge")
    with pytest.raises(CatalogError) as exc:
        parse_catalog(raw).select("aws", "us-east-1", "a100-80gb", 8)
    assert exc.value.field == "gpu"
    assert str(exc.value) == ("a100-80gb is not offered in aws us-east-1; offered there: a100-40gb, h100; a100-80gb "
                              "x8 is offered in: ap-northeast-1, ap-southeast-1, eu-central-1, il-central-1, us-west-2")


def test_price_for_an_unknown_shape_is_rejected():
    raw = json.loads(DATA_FILE.read_text())
    raw["prices"]["aws"]["us-east-1"]["p6.48xlarge"] = 1.0
    with pytest.raises(CatalogError, match="unknown aws shapes in us-east-1"):
        parse_catalog(raw)


def test_gcp_prices_are_linear_in_gpu_count():
    """The derived sizes (see the data file's notes) stay within a cent per GPU of the given ones."""
    catalog = load_catalog()
    for region in catalog.regions("gcp"):
        for family in ("a3-highgpu", "a2-highgpu", "a2-ultragpu"):
            if f"{family}-8g" not in catalog.prices["gcp"][region]:
                continue
            per_gpu = [catalog.prices["gcp"][region][f"{family}-{n}g"] / n for n in (1, 2, 4, 8)]
            assert max(per_gpu) - min(per_gpu) < 0.01, (region, family, per_gpu)


def test_offered_zones_per_region_and_shape():
    from gpu_fleet.components.gpu_catalog import offered_zones

    assert offered_zones("aws", "us-east-1", "p4de.24xlarge") == ("use1-az4", "use1-az6")
    assert offered_zones("gcp", "europe-west4", "a3-highgpu-8g") == ("europe-west4-b", "europe-west4-c")
    assert offered_zones("gcp", "us-east4", "a2-highgpu-8g") == ()  # not recorded: nothing restricted
    offering = load_catalog().select("aws", "us-east-1", "h100", 8)
    assert offering.zones == offered_zones("aws", "us-east-1", "p5.48xlarge")


def test_zone_table_uses_zone_ids_on_aws_and_zone_names_on_gcp():
    cat = load_catalog()
    for region, table in cat.zones["aws"].items():
        # Zone IDs: the region's short code and -azN (us-east-1: use1-az4), not names (us-east-1a).
        number = region.rsplit("-", 1)[1]
        assert all(re.fullmatch(r"[a-z]+\d-az\d+", z) for zones in table.values() for z in zones), region
        assert all(z.split("-")[0][-1] == number for zones in table.values() for z in zones), region
    for region, table in cat.zones["gcp"].items():
        assert all(z.startswith(region + "-") for zones in table.values() for z in zones)


def test_zones_for_an_unknown_shape_are_rejected():
    raw = json.loads(DATA_FILE.read_text())
    raw["zones"]["aws"]["us-east-1"]["p9.huge"] = ["use1-az1"]
    with pytest.raises(CatalogError, match="zones for unknown aws shapes"):
        parse_catalog(raw)
