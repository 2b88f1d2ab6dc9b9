"""flpjax/reporting/statistics.py: the diverged-network rule, statistics over networks, verdicts."""

import math

import numpy as np
import pytest

from flpjax.experiment import aggregate
from flpjax.reporting import statistics


def _result(values, nonfinite=None, stopped=None):
  runs = []
  for i, v in enumerate(values):
    r = {"mse": v, "lifetimes": 50, "seed": i, "nonfinite_lifetimes": (nonfinite or {}).get(i, 0)}
    if stopped and i in stopped:
      r["stopped"] = "meta-training stopped at step 10: 100 non-finite meta-steps"
    runs.append(r)
  return {"runs": runs}


def test_a_network_diverges_when_non_finite_stopped_or_above_ten_times_no_learning():
  values, diverged = statistics.network_values(
      _result([1.0, float("nan"), 40.0, 2.0, 0.5], nonfinite={1: 3}, stopped={4}), "mse",
      no_learning=3.12)
  assert values[0] == 1.0 and values[3] == 2.0
  assert [d["network"] for d in diverged] == [1, 2, 4]
  assert "3 of 50" in diverged[0]["why"] and "10x" in diverged[1]["why"]
  assert "stopped" in diverged[2]["why"]
  # 1.11e27, the mean DFA (3) once reported, is a diverged network, never averaged in.
  stats = statistics.over_networks(statistics.network_values(_result([0.2, 1.11e27, 0.3]), "mse", 3.12)[0])
  assert stats["diverged"] == 1 and stats["networks"] == 2
  assert stats["mean"] == pytest.approx(0.25)
  # Without a no-learning level only non-finite networks diverge; aggregate uses the same rule.
  v = aggregate.per_network(_result([5.0, float("inf")]))
  assert v[0] == 5.0 and math.isnan(v[1])


def test_over_networks_mean_and_standard_error():
  s = statistics.over_networks([1.0, 2.0, 3.0, None, float("nan")])
  assert s["mean"] == 2.0 and s["networks"] == 3 and s["diverged"] == 2
  assert s["stderr"] == pytest.approx(np.std([1, 2, 3], ddof=1) / math.sqrt(3))
  assert statistics.over_networks([1.0])["stderr"] is None


def test_below_is_two_standard_errors_of_the_difference():
  a, b = {"mean": 1.0, "stderr": 0.1}, {"mean": 1.3, "stderr": 0.1}
  assert statistics.below(a, b) == "holds"  # 0.3 > 2 * 0.141
  assert statistics.below(a, {"mean": 1.25, "stderr": 0.1}) == "fails"  # 0.25 < 0.283
  assert statistics.below(b, a) == "fails"
  assert statistics.below({"mean": 1.0, "stderr": None}, b).startswith("fails (fewer than 2")


def test_comparable_is_an_equivalence_test_with_a_margin():
  # 0.0228 against 2.33 was once read "comparable" (not different at 2 se): not any more.
  assert statistics.comparable({"mean": 0.0228, "stderr": 0.01}, {"mean": 2.33, "stderr": 2.0}) == "fails"
  assert statistics.comparable({"mean": 1.0, "stderr": 0.02}, {"mean": 1.05, "stderr": 0.02}) == "holds"
  # Equal means but a wide interval: not shown equivalent.
  assert statistics.comparable({"mean": 1.0, "stderr": 0.2}, {"mean": 1.0, "stderr": 0.2}) == "fails"


def test_a_claim_whose_control_did_not_learn_fails_with_that_reason():
  flp = {"mean": 0.04, "stderr": 0.004, "networks": 6, "diverged": 0}
  reuse = {"mean": 3.1, "stderr": 0.2, "networks": 6, "diverged": 0}
  baseline = {"mean": 3.12, "stderr": 0.1}
  r = statistics.decide("x", "FLP below reuse", "below", flp, reuse, scale="mini",
                    controls=[("feature reuse (1)", reuse, baseline)])
  assert r["verdict"] == "fails" and r["reason"].startswith("control did not learn")
  learned = dict(reuse, mean=0.5, stderr=0.05)
  r = statistics.decide("x", "FLP below reuse", "below", flp, learned, scale="mini",
                    controls=[("feature reuse (1)", learned, baseline)])
  assert r["verdict"] == "holds" and r["networks_a"] == 6 and r["diverged_b"] == 0
  assert set(r) >= {"scale", "claim", "kind", "a", "b", "se_a", "se_b", "networks_a",
                    "networks_b", "diverged_a", "diverged_b", "verdict", "reason"}
  assert statistics.decide("x", "t", "below", None, reuse, scale="mini")["reason"] == "not run"


def test_learns_per_network_is_a_paired_test_on_the_same_lifetimes():
  rng = np.random.default_rng(0)
  base = 3.0 + rng.normal(size=50)
  assert statistics.learns_per_network(base - 0.5, base)  # always 0.5 better: holds
  assert not statistics.learns_per_network(base + rng.normal(scale=2, size=50) * 0, base)
  assert not statistics.learns_per_network([float("nan")] * 50, base)
