"""``gpu-fleet tune`` and the shipped ``lean`` autoscaling preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpu_fleet.components.config import AUTOSCALING_PRESETS, AutoscalingConfig, load_stack_file, pool_offering
from gpu_fleet.components.hpa import hpa_spec
from gpu_fleet import tune
from gpu_fleet.cli import main
from gpu_fleet.policy_check import load_policies
from gpu_fleet.simulate import serving, traces
from gpu_fleet.simulate.controller import settings_from_spec
from gpu_fleet.simulate.report import summarize
from gpu_fleet.simulate.run import ControlLoop, simulate, utilization_target

REPO = Path(__file__).resolve().parents[2]


def test_the_preset_fills_what_the_stack_does_not_set_and_the_seed_stays_the_default():
    assert AutoscalingConfig() == AutoscalingConfig.model_validate({})
    assert AutoscalingConfig().preset is None and AutoscalingConfig().max_replicas == 20
    lean = AutoscalingConfig.model_validate({"preset": "lean"})
    assert lean.max_replicas == 8 and lean.gpu_utilization_target == 80
    assert lean.scale_down.policies[0].type == "Percent"
    mine = AutoscalingConfig.model_validate({"preset": "lean", "maxReplicas": 6})
    assert mine.max_replicas == 6 and mine.gpu_utilization_target == 80
    with pytest.raises(ValueError, match="lean"):
        AutoscalingConfig.model_validate({"preset": "fast"})


@pytest.mark.parametrize("trace", traces.BUILTIN)
def test_the_lean_preset_stays_within_1_2x_of_the_oracle(trace):
    cfg = load_stack_file(REPO / "stacks" / "Pulumi.us-east.yaml")
    model = cfg.models[0]
    shape = pool_offering(cfg, next(p for p in cfg.gpu_pools if p.name == model.pool)).shape
    model_serving = serving.ServingModel(serving.replica_capacity(model, shape))
    loop = ControlLoop(serving.StartupDelay(serving.node_provision_seconds(cfg.cloud), serving.DEFAULT_IMAGE_PULL_SECONDS,
                                            serving.model_load_seconds(model, shape)))
    deployed = settings_from_spec(hpa_spec(model.autoscaling, "vllm-x"))
    baseline = traces.DEFAULT_BASELINE_FRACTION * deployed.min_replicas * model_serving.rps_at(utilization_target(deployed))
    t = traces.builtin_trace(trace, baseline)
    reference = simulate(deployed, model_serving, t, loop)
    lean = settings_from_spec(hpa_spec(AutoscalingConfig(preset="lean"), "vllm-x"))
    s = summarize(simulate(lean, model_serving, t, loop, reference=reference), 20, 2)
    assert s.gpu_hours <= 1.2 * s.oracle_gpu_hours
    seed = summarize(reference, 20, 2)
    if trace == "spike":
        assert seed.gpu_hours > 2 * seed.oracle_gpu_hours  # what the preset fixes


def test_the_lean_preset_passes_every_mandatory_policy():
    spec = hpa_spec(AutoscalingConfig.model_validate(AUTOSCALING_PRESETS["lean"]), "vllm-x")
    assert tune.hpa_violations(spec, REPO) == []
    # The check can fail: one replica breaks hpa-min-replicas.
    assert any(v.startswith("hpa-min-replicas") for v in tune.hpa_violations({**spec, "minReplicas": 1}, REPO))


def test_the_grid_has_ten_thousand_settings_inside_the_policy_bounds():
    b = tune.bounds(load_policies(REPO))
    assert (b.min_replicas, b.max_up_window, b.min_down_window, b.max_down_window) == (2, 120, 300, 600)
    settings = tune.grid(b, AutoscalingConfig(), 0)
    assert len(settings) >= 10_000
    assert all(int(s["minReplicas"]) >= 2 and 300 <= int(s["scaleDown.stabilizationWindowSeconds"]) <= 600
               for s in settings)


def test_pareto_keeps_only_undominated_points():
    assert tune.pareto([(1, 5), (2, 4), (2, 6), (3, 4), (4, 1)]) == [0, 1, 4]


def test_tune_recommends_a_setting_with_its_oracle_ratio_per_trace(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(REPO)
    # A small grid keeps the test quick; the search itself is the same.
    monkeypatch.setattr(tune, "MAX_REPLICAS", (6, 8))
    monkeypatch.setattr(tune, "UTILIZATION_TARGETS", (80,))
    monkeypatch.setattr(tune, "PENDING_TARGETS", (10,))
    monkeypatch.setattr(tune, "SCALE_UP_WINDOWS", (60,))
    monkeypatch.setattr(tune, "SCALE_UP_POLICIES", ("Percent:100:60",))
    monkeypatch.setattr(tune, "SCALE_DOWN_WINDOWS", (300,))
    monkeypatch.setattr(tune, "SCALE_DOWN_POLICIES", ("Percent:50:60",))
    monkeypatch.setattr(tune, "EXTRA_WARM_NODES", (0,))
    plot = tmp_path / "front.png"
    assert main(["tune", "us-east", "--trace", "spike", "--max-queue-minutes", "60", "--format", "json",
                 "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    rec = out["recommended"]
    assert out["evaluated"] == 3 and out["front"]  # max 6, 8 and the deployed 20
    assert rec["traces"]["spike"]["oracleRatio"] <= 1.2 < out["deployed"]["traces"]["spike"]["oracleRatio"]
    assert rec["mandatoryPolicyViolations"] == []
    assert "--set maxReplicas=" + rec["settings"]["maxReplicas"] in rec["setFlags"]
    assert "autoscaling:" in rec["stackYaml"] and "preset" not in rec["stackYaml"]
    assert plot.stat().st_size > 0
    # Too strict a queue limit is a usage error, not a traceback.
    assert main(["tune", "us-east", "--max-queue-minutes", "0"]) == 2
    assert "no setting queues that little" in capsys.readouterr().err
