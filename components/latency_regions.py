"""Which AWS region a region stack stands for in Route 53 latency routing.

Route 53 latency records name an AWS region: Route 53 answers each resolver with the
record whose region it measures as fastest from that resolver. An AWS region stack is
labelled with its own location; a GCP region has no AWS label, so it takes the AWS region
nearest to it. The label decides which clients a region "owns": clients nearest to the
labelled AWS region are sent to it.

How the table was built: the city of each GCP region (Google Cloud "Cloud locations"
page) against the city of each AWS region (AWS "Regions and Availability Zones" page).
Where both clouds are in the same metro the label is that AWS region; otherwise the AWS
region at the shortest great-circle distance between the two cities (noted per entry).
Only AWS regions enabled by default or long established are used, so a label never
points at an opt-in region the account may not have; where that matters it is noted.

Route 53 keeps one latency record per label and name, so region stacks that share a label
(GCP us-east4 and AWS us-east-1, both in Northern Virginia) sit behind one latency alias
record and a weighted record set (:mod:`gpu_fleet.components.global_routing`). The table covers every
location of the GPU catalog (``components/data/gpu_shapes.json``), which a test holds.
"""

from __future__ import annotations

from typing import Optional

#: GCP region -> (its city, the nearest AWS region, that region's city, why).
GCP_TO_AWS: dict[str, tuple[str, str, str, str]] = {
    # United States and Canada
    "us-east1": ("Moncks Corner, South Carolina", "us-east-1", "Northern Virginia", "nearest (about 650 km)"),
    "us-east4": ("Ashburn, Northern Virginia", "us-east-1", "Northern Virginia", "same metro"),
    "us-east5": ("Columbus, Ohio", "us-east-2", "Ohio (Columbus)", "same metro"),
    "us-central1": ("Council Bluffs, Iowa", "us-east-2", "Ohio (Columbus)", "nearest (about 1,100 km; us-west-2 is 2,200 km)"),
    "us-south1": ("Dallas, Texas", "us-east-2", "Ohio (Columbus)", "nearest (about 1,450 km; us-east-1 1,900 km)"),
    "us-west1": ("The Dalles, Oregon", "us-west-2", "Oregon (Boardman)", "same area"),
    "us-west2": ("Los Angeles, California", "us-west-1", "Northern California", "nearest (about 500 km)"),
    "us-west3": ("Salt Lake City, Utah", "us-west-2", "Oregon (Boardman)", "nearest (about 850 km; us-west-1 950 km)"),
    "us-west4": ("Las Vegas, Nevada", "us-west-1", "Northern California", "nearest (about 750 km)"),
    "northamerica-northeast1": ("Montreal, Quebec", "ca-central-1", "Montreal", "same metro"),
    "northamerica-northeast2": ("Toronto, Ontario", "ca-central-1", "Montreal", "nearest (about 500 km)"),
    # South America
    "southamerica-east1": ("Sao Paulo, Brazil", "sa-east-1", "Sao Paulo", "same metro"),
    "southamerica-west1": ("Santiago, Chile", "sa-east-1", "Sao Paulo",
                           "nearest AWS region (no Chilean region; about 2,600 km)"),
    # Europe
    "europe-west1": ("St. Ghislain, Belgium", "eu-west-3", "Paris", "nearest (about 230 km; eu-central-1 350 km)"),
    "europe-west2": ("London, England", "eu-west-2", "London", "same metro"),
    "europe-west3": ("Frankfurt, Germany", "eu-central-1", "Frankfurt", "same metro"),
    "europe-west4": ("Eemshaven, Netherlands", "eu-central-1", "Frankfurt", "nearest (about 400 km; eu-west-2 550 km)"),
    "europe-west6": ("Zurich, Switzerland", "eu-central-1", "Frankfurt",
                     "eu-central-2 (Zurich) is opt-in; Frankfurt is about 300 km"),
    "europe-west8": ("Milan, Italy", "eu-central-1", "Frankfurt",
                     "eu-south-1 (Milan) is opt-in; Frankfurt is about 520 km"),
    "europe-west9": ("Paris, France", "eu-west-3", "Paris", "same metro"),
    "europe-west10": ("Berlin, Germany", "eu-central-1", "Frankfurt", "nearest (about 420 km)"),
    "europe-west12": ("Turin, Italy", "eu-west-3", "Paris",
                      "eu-south-1 (Milan) is opt-in; Paris is about 580 km, Frankfurt 600 km"),
    "europe-north1": ("Hamina, Finland", "eu-north-1", "Stockholm", "nearest (about 400 km)"),
    "europe-north2": ("Stockholm, Sweden", "eu-north-1", "Stockholm", "same metro"),
    "europe-central2": ("Warsaw, Poland", "eu-central-1", "Frankfurt", "nearest (about 900 km)"),
    "europe-southwest1": ("Madrid, Spain", "eu-west-3", "Paris",
                          "eu-south-2 (Aragon) is opt-in; Paris is about 1,050 km"),
    # Asia Pacific
    "asia-east1": ("Changhua County, Taiwan", "ap-northeast-1", "Tokyo",
                   "ap-east-1 (Hong Kong) is opt-in; Tokyo is about 2,100 km, Singapore 3,200 km"),
    "asia-east2": ("Hong Kong", "ap-southeast-1", "Singapore",
                   "ap-east-1 (Hong Kong) is opt-in; Singapore is about 2,600 km, Tokyo 2,900 km"),
    "asia-northeast1": ("Tokyo, Japan", "ap-northeast-1", "Tokyo", "same metro"),
    "asia-northeast2": ("Osaka, Japan", "ap-northeast-3", "Osaka", "same metro"),
    "asia-northeast3": ("Seoul, South Korea", "ap-northeast-2", "Seoul", "same metro"),
    "asia-south1": ("Mumbai, India", "ap-south-1", "Mumbai", "same metro"),
    "asia-south2": ("Delhi, India", "ap-south-1", "Mumbai",
                    "ap-south-2 (Hyderabad) is opt-in; Mumbai is about 1,150 km"),
    "asia-southeast1": ("Jurong West, Singapore", "ap-southeast-1", "Singapore", "same metro"),
    "asia-southeast2": ("Jakarta, Indonesia", "ap-southeast-1", "Singapore",
                        "ap-southeast-3 (Jakarta) is opt-in; Singapore is about 900 km"),
    "australia-southeast1": ("Sydney, Australia", "ap-southeast-2", "Sydney", "same metro"),
    "australia-southeast2": ("Melbourne, Australia", "ap-southeast-2", "Sydney",
                             "ap-southeast-4 (Melbourne) is opt-in; Sydney is about 710 km"),
}

#: AWS regions Route 53 accepts as a latency label and that this table or a stack may use.
AWS_REGIONS = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "eu-central-2", "eu-south-1", "eu-south-2",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-east-1",
    "af-south-1", "me-south-1", "me-central-1", "il-central-1",
})


def latency_region(cloud: str, location: str) -> Optional[str]:
    """The AWS region Route 53 latency routing labels this region with, or None when the
    table has no entry for a GCP region (or an AWS location is not a known region)."""
    if cloud == "aws":
        return location if location in AWS_REGIONS else None
    entry = GCP_TO_AWS.get(location)
    return entry[1] if entry else None
