"""Grafana dashboards: every query parses with promtool and reads only series the
recording rules or the exporters produce; us-east plans them; Grafana's values match the
chart's keys."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from gpu_fleet.components import dashboards
from gpu_fleet.components.monitoring_rules import ModelRef, prometheus_rule_groups
from gpu_fleet.manifests import promtool_errors
from gpu_fleet.policy_check import load_pack

REPO = Path(__file__).resolve().parents[2]
# The policy pack's PromQL reader, loaded as `gpu-fleet plan` loads the pack.
_ALERT_RULES = load_pack(REPO)["alert_rules"]
promql_selectors, promql_tokens = _ALERT_RULES.promql_selectors, _ALERT_RULES.promql_tokens
REFERENCE = Path(os.environ.get("GPU_FLEET_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
KPS_VALUES = REFERENCE / "charts" / "kube-prometheus-stack-81.4.3-values.yaml"

MODELS = [ModelRef("llama-3-1-8b"), ModelRef("qwen2-5-72b"), ModelRef("mixtral", namespace="batch")]
ALL = dashboards.dashboards(MODELS, lmcache_models=["llama-3-1-8b"])


def _expanded(board: dict) -> list[str]:
    return [dashboards.expand(q, namespace="llm-serving", model="llama-3-1-8b") for q in dashboards.queries(board)]


def _recorded() -> set[str]:
    return {r["record"] for g in prometheus_rule_groups(MODELS) for r in g["rules"] if "record" in r}


def unknown_series(exprs: list[str]) -> list[tuple[str, str]]:
    """(metric, query) for every selector that is neither recorded nor exported."""
    known = _recorded() | dashboards.EXPORTER_SERIES
    return [(s.metric, e) for e in exprs for s in promql_selectors(promql_tokens(e)) if s.metric not in known]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt install prometheus)")
@pytest.mark.parametrize("name", sorted(ALL))
def test_every_query_parses_with_promtool(name):
    exprs = _expanded(ALL[name])
    assert exprs
    rules = [{"record": f"dashboard:query_{i}:check", "expr": e} for i, e in enumerate(exprs)]
    assert promtool_errors([{"name": f"dashboard-{name}", "rules": rules}]) == []


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt install prometheus)")
def test_promtool_check_catches_a_broken_query():
    assert promtool_errors([{"name": "x", "rules": [{"record": "x:y:z", "expr": "sum by (le (rate(a[1m]))"}]}])


@pytest.mark.parametrize("name", sorted(ALL))
def test_queries_read_only_recorded_or_exported_series(name):
    assert unknown_series(_expanded(ALL[name])) == []


def test_the_series_check_catches_a_misspelled_metric():
    # vLLM 0.11 hides the old name; a dashboard reading it would stay empty.
    assert unknown_series(['avg(vllm:gpu_cache_usage_perc{model="x"})']) == [
        ("vllm:gpu_cache_usage_perc", 'avg(vllm:gpu_cache_usage_perc{model="x"})')]


def test_no_grafana_variable_is_left_for_the_parser():
    for name, board in ALL.items():
        for e in _expanded(board):
            assert "$" not in e.replace("$1", ""), (name, e)


def test_model_dashboard_charts_both_hpa_signals_and_the_latency_histograms():
    text = " ".join(dashboards.queries(ALL["model"]))
    for metric in ("dcgm_gpu_utilization", "llm_pending_requests", "vllm:time_to_first_token_seconds_bucket",
                   "vllm:inter_token_latency_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket",
                   "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total",
                   "kube_horizontalpodautoscaler_status_desired_replicas",
                   "kube_horizontalpodautoscaler_spec_min_replicas", "kube_horizontalpodautoscaler_spec_max_replicas",
                   "kube_deployment_status_replicas_ready", "kube_deployment_status_replicas_unavailable"):
        assert metric in text, metric


def test_lmcache_panels_only_when_a_model_runs_lmcache():
    with_lmcache = " ".join(dashboards.queries(ALL["model"]))
    without = " ".join(dashboards.queries(dashboards.model_dashboard(MODELS)))
    assert dashboards.LMCACHE_HIT_TOKENS in with_lmcache
    assert "lmcache:" not in without


def test_variables_list_the_models_and_namespaces():
    variables = {v["name"]: v for v in ALL["model"]["templating"]["list"]}
    assert variables["model"]["query"] == "llama-3-1-8b,qwen2-5-72b,mixtral"
    assert variables["namespace"]["query"] == "batch,llm-serving"


def test_panels_do_not_overlap():
    for board in ALL.values():
        cells = set()
        for p in board["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, p["title"]
                    cells.add((x, y))
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_no_dashboards_without_models():
    assert dashboards.dashboard_config_maps([]) == []


def test_config_maps_carry_the_sidecar_label_and_valid_json():
    maps = dashboards.dashboard_config_maps(MODELS)
    assert [m["metadata"]["name"] for m in maps] == ["gpu-fleet-dashboard-fleet", "gpu-fleet-dashboard-model"]
    for m in maps:
        assert m["metadata"]["labels"][dashboards.DASHBOARD_LABEL] == dashboards.DASHBOARD_LABEL_VALUE
        (text,) = m["data"].values()
        assert json.loads(text)["uid"].startswith("gpu-fleet-")


@pytest.mark.skipif(not KPS_VALUES.exists(), reason=f"no chart reference data at {KPS_VALUES} (set GPU_FLEET_REFERENCE_DIR)")
def test_grafana_values_are_keys_of_the_pinned_chart():
    chart = yaml.safe_load(KPS_VALUES.read_text())["grafana"]
    sidecar = chart["sidecar"]["dashboards"]
    # Our label and value are the sidecar's; the datasource uid is the one the chart provisions.
    assert (sidecar["label"], str(sidecar["labelValue"])) == (dashboards.DASHBOARD_LABEL, dashboards.DASHBOARD_LABEL_VALUE)
    assert chart["sidecar"]["datasources"]["uid"] == dashboards.DATASOURCE["uid"]
    ours = dashboards.grafana_values({"gpu-fleet/pool": "system"})
    for key in ("enabled", "defaultDashboardsTimezone"):
        assert key in chart
    assert set(ours["admin"]) == set(chart["admin"]) == {"existingSecret", "userKey", "passwordKey"}
    assert (ours["admin"]["userKey"], ours["admin"]["passwordKey"]) == (chart["admin"]["userKey"], chart["admin"]["passwordKey"])
    assert set(ours["sidecar"]["dashboards"]) <= set(sidecar)


def test_us_east_plans_a_dashboard_config_map_charting_both_hpa_metrics(reference_plan):
    objects = [m for _, m in reference_plan("us-east").recording.kubernetes_objects()]
    boards = [m for m in objects if m["kind"] == "ConfigMap"
              and (m["metadata"].get("labels") or {}).get(dashboards.DASHBOARD_LABEL) == dashboards.DASHBOARD_LABEL_VALUE]
    assert {m["metadata"]["name"] for m in boards} == {"gpu-fleet-dashboard-fleet", "gpu-fleet-dashboard-model"}
    model = next(m for m in boards if m["metadata"]["name"].endswith("model"))
    text = " ".join(dashboards.queries(json.loads(next(iter(model["data"].values())))))
    assert "dcgm_gpu_utilization" in text and "llm_pending_requests" in text
    # Grafana is on, with its admin password from a Secret the program generates.
    release = next(m for m in reference_plan("us-east").recording.resources
                   if m.type == "kubernetes:helm.sh/v3:Release" and m.inputs.get("chart") == "kube-prometheus-stack")
    grafana = release.inputs["values"]["grafana"]
    assert grafana["enabled"] is True and grafana["admin"]["existingSecret"] == dashboards.GRAFANA_ADMIN_SECRET
    assert "adminPassword" not in grafana
    secret = next(m for m in objects if m["kind"] == "Secret" and m["metadata"]["name"] == dashboards.GRAFANA_ADMIN_SECRET)
    assert set(secret["stringData"]) == {dashboards.GRAFANA_ADMIN_USER_KEY, dashboards.GRAFANA_ADMIN_PASSWORD_KEY}
