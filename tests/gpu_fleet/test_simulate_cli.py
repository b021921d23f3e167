"""``gpu-fleet simulate``: the reference stacks, overrides, output formats and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from gpu_fleet import cli
from gpu_fleet.simulate import cli as simulate_cli

REPO = Path(__file__).resolve().parents[2]


def _json(capsys, *argv: str) -> dict:
    assert cli.main(["simulate", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _fails(capsys, *argv: str, code: int = 2) -> str:
    assert cli.main(["simulate", *argv]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_spike_on_us_east_as_deployed_with_plot(capsys, tmp_path):
    png = tmp_path / "out" / "spike.png"
    doc = _json(capsys, "us-east", "--trace", "spike", "--plot", str(png))
    assert (doc["stack"], doc["model"], doc["trace"]["name"]) == ("us-east", "llama-3-1-70b", "spike")
    spec = doc["settings"]["hpaSpec"]
    # The spec pulumi up deploys: the seed's HPA for Deployment vllm-<model>.
    assert spec["scaleTargetRef"]["name"] == "vllm-llama-3-1-70b"
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 20)
    assert spec["behavior"]["scaleUp"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 60}]
    s = doc["summary"]
    assert s["gpuHours"] > s["oracleGpuHours"] > 0
    assert s["queueAboveThresholdMinutes"] > 0 and s["secondsToEnoughReady"] > 600
    assert doc["settings"]["startup"]["totalSeconds"] == 240 + 120 + doc["settings"]["startup"]["modelLoadSeconds"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_table_output_and_defaults_to_the_first_region_stack(capsys):
    assert cli.main(["simulate", "--trace", "failover"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("simulate eu-west / qwen2-5-72b / failover:")
    for label in ("GPU-hours (HPA)", "GPU-hours (oracle)", "queue > 20 pending", "scale events", "time to enough replicas"):
        assert label in out


def test_overrides_compare_side_by_side(capsys):
    base = _json(capsys, "us-east", "--trace", "spike")
    fast = _json(capsys, "us-east", "--trace", "spike", "--set", "scaleDown.stabilizationWindowSeconds=60",
                 "--set", "scaleDown.policies=Percent:50:60", "--set", "scaleUp.policies=Pods:4:15,Percent:100:15",
                 "--set", "scaleUp.stabilizationWindowSeconds=0", "--set", "minReplicas=3")
    spec = fast["settings"]["hpaSpec"]
    assert spec["minReplicas"] == 3
    assert spec["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                                             "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}
    assert fast["settings"]["overrides"]["minReplicas"] == "3"
    assert fast["summary"]["secondsToEnoughReady"] < base["summary"]["secondsToEnoughReady"]
    assert fast["summary"]["queueAboveThresholdMinutes"] < base["summary"]["queueAboveThresholdMinutes"]
    quick = _json(capsys, "us-east", "--trace", "spike", "--set", "startupSeconds=60", "--set", "gpuUtilizationTarget=60",
                  "--set", "metricsLagSeconds=0")
    assert quick["settings"]["startup"] == {"totalSeconds": 60, "source": "--set startupSeconds"}
    assert quick["settings"]["hpaSpec"]["metrics"][0]["external"]["target"]["averageValue"] == "60"
    assert quick["summary"]["secondsToEnoughReady"] < base["summary"]["secondsToEnoughReady"]


def test_explicit_capacity_and_baseline(capsys):
    doc = _json(capsys, "us-east", "--model", "llama-3-1-8b", "--trace", "ramp", "--set", "concurrency=100",
                "--set", "throughputRps=5", "--set", "baselineRps=4", "--set", "rampFactor=2")
    assert doc["settings"]["replica"]["concurrency"] == 100 and doc["settings"]["replica"]["gpus"] == 1
    assert doc["trace"]["description"].startswith("4 rps ramping to 8 rps")


def test_csv_trace(capsys, tmp_path):
    f = tmp_path / "burst.csv"
    f.write_text("seconds,requests_per_second\n0,20\n600,80\n1800,20\n")
    doc = _json(capsys, "us-east", "--trace", str(f))
    assert doc["trace"]["seconds"] == 1801 and doc["summary"]["stepAtSeconds"] is None


@pytest.mark.parametrize(("argv", "message"), [
    (["us-east", "--set", "scaleDown.window=60"], "unknown key; did you mean 'scaleDown.policies'?"),
    (["us-east", "--set", "baseline_rps=10"], "did you mean 'baselineRps'?"),
    (["us-east", "--set", "minReplicas"], "expected key=value"),
    (["us-east", "--set", "minReplicas=0"], "minReplicas: scaling to zero (HPAScaleToZero, alpha) is not modelled"),
    (["us-east", "--set", "minReplicas=30"], "maxReplicas: 20 is below minReplicas 30"),
    (["us-east", "--set", "scaleUp.policies=fast"], "expected TYPE:VALUE:PERIOD_SECONDS"),
    (["us-east", "--set", "scaleUp.selectPolicy=Fastest"], "--set scaleUp.selectPolicy: Input should be 'Max', 'Min' or 'Disabled'"),
    (["us-east", "--set", "metricsLagSeconds=soon"], "expected a whole number"),
    (["us-east", "--set", "startupSeconds=60", "--set", "imagePullSeconds=10"], "replaces its phases"),
    (["us-east", "--set", "rampFactor=2"], "rampFactor does not apply to the spike trace"),
    (["us-east", "--model", "gpt-5"], "--model gpt-5: not in Pulumi.us-east.yaml (models: llama-3-1-70b, llama-3-1-8b, qwen2-5-72b)"),
    (["mars"], "no such stack file (stacks: eu-west, global, us-east)"),
    (["global"], "a global stack has no models"),
    (["us-east", "--trace", "weekly"], "neither a built-in trace (diurnal, spike, ramp, failover, idle) nor a file"),
])
def test_usage_errors_exit_2_in_one_line(capsys, argv, message):
    err = _fails(capsys, *argv)
    assert message in err and err.count("\n") == 1


def test_csv_errors_exit_2_naming_the_line(capsys, tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("0,10\n60,lots\n")
    assert f"{f}:2: not numbers" in _fails(capsys, "us-east", "--trace", str(f))


def test_config_errors_exit_2_naming_file_and_field(capsys, tmp_path, monkeypatch):
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    doc = yaml.safe_load((REPO / "stacks" / "Pulumi.us-east.yaml").read_text())
    doc["config"]["gpu-fleet:fleet"]["models"][0]["autoscaling"] = {"minReplicas": 2, "maxReplica": 5}
    (tmp_path / "stacks" / "Pulumi.broken.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)
    err = _fails(capsys, "broken")
    assert "Pulumi.broken.yaml: models[0].autoscaling.maxReplica: unknown key; did you mean 'maxReplicas'?" in err


def test_other_failures_exit_1(capsys, monkeypatch):
    def boom(*_args, **_kw):
        raise RuntimeError("disk full\nmore detail")

    monkeypatch.setattr(simulate_cli, "simulate", boom)
    assert _fails(capsys, "us-east", code=1) == "simulate failed: RuntimeError: disk full\n"


@pytest.mark.parametrize("argv,words", [
    (["--set", "baselineRps=1e308"], "--set baselineRps=1e308: expected a finite number of at most 1e+09"),
    (["--set", "meanLatencySeconds=inf"], "--set meanLatencySeconds=inf: expected a finite number"),
])
def test_huge_settings_are_one_line_config_errors(capsys, argv, words):
    err = _fails(capsys, "us-east", *argv)
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_huge_load_in_a_trace_file_is_a_config_error(capsys, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("0,10\n60,1e308\n120,10\n")
    err = _fails(capsys, "us-east", "--trace", str(trace))
    assert err.strip() == f"simulate: {trace}:2: requests_per_second must be a number from 0 to 1e+07, got 1e308"
