"""Several runs in one training job: seeds, sweeps, validation, OML through train.py."""

import json

import chex
import jax
import numpy as np
import pytest

from flpjax import config as config_lib
from flpjax import train
from test_train import tiny_config


def _tiny(steps=6, **kw):
  """test_train's tiny sine FLP (3) run (16-unit layers 0-3; plastic 1, 2, 3)."""
  return tiny_config(steps, **kw)


def test_run_r_is_the_single_run_with_seed_plus_r(tmp_path):
  multi = _tiny(runs=2, seed=5)
  result = train.train_and_evaluate(multi, str(tmp_path / "multi"))
  params, _ = train.restore_params(str(tmp_path / "multi"), multi)
  assert result["n_runs"] == 2 and len(result["runs"]) == 2
  for r in range(2):
    single = _tiny(seed=5 + r)
    alone = train.train_and_evaluate(single, str(tmp_path / f"single{r}"))
    params1, _ = train.restore_params(str(tmp_path / f"single{r}"), single)
    jax.tree.map(lambda a, b, r=r: np.testing.assert_allclose(a[r], b, rtol=2e-4, atol=1e-6),
                 params, params1)
    np.testing.assert_allclose(result["runs"][r]["mse"], alone["mse"], rtol=1e-3)
  mses = [r["mse"] for r in result["runs"]]
  np.testing.assert_allclose(result["mse"], np.mean(mses))
  np.testing.assert_allclose(result["mse_stderr"], np.std(mses, ddof=1) / np.sqrt(2))
  records = [json.loads(l) for l in open(tmp_path / "multi" / "metrics.jsonl")]
  train_rec = [r for r in records if r["kind"] == "train"]
  assert len(train_rec[-1]["loss_runs"]) == 2


def test_runs_of_both_orders_are_the_single_runs_of_each_order(tmp_path):
  """config.run_orders: the i.i.d. and continual cells of a row as one vmapped program;
  run r is the single run with seed + r and order run_orders[r], in training and in
  its evaluation."""
  from flpjax.experiment import aggregate
  multi = _tiny(runs=2, seed=5, run_orders=("continual", "iid"))
  result = train.train_and_evaluate(multi, str(tmp_path / "multi"))
  params, _ = train.restore_params(str(tmp_path / "multi"), multi)
  assert [r["order"] for r in result["runs"]] == ["continual", "iid"]
  for r, order in enumerate(multi.run_orders):
    single = _tiny(seed=5 + r, order=order)
    alone = train.train_and_evaluate(single, str(tmp_path / f"single{r}"))
    params1, _ = train.restore_params(str(tmp_path / f"single{r}"), single)
    jax.tree.map(lambda a, b, r=r: np.testing.assert_allclose(a[r], b, rtol=2e-4, atol=1e-6),
                 params, params1)
    np.testing.assert_allclose(result["runs"][r]["mse"], alone["mse"], rtol=1e-3)
  cells = aggregate.split_by_order(result)
  assert list(cells) == ["continual", "iid"] and cells["iid"]["n_runs"] == 1
  assert cells["continual"]["mse"] == result["runs"][0]["mse"]
  assert cells["iid"]["mse"] == result["runs"][1]["mse"]
  both = aggregate.split_by_order({"runs": [dict(r, order="iid") for r in result["runs"]]})
  np.testing.assert_allclose(both["iid"]["mse"], np.mean([r["mse"] for r in result["runs"]]))


@pytest.mark.parametrize("fields, message", [
    (dict(runs=2, run_orders=("iid",)), r"config.run_orders=\('iid',\): expected \(\) or a "
                                        "tuple of config.runs=2"),
    (dict(runs=2, run_orders=("iid", "sorted")), "config.run_orders"),
    (dict(runs=2, run_orders=("iid", "continual"), estimator="truncated",
          **{"truncated.window": 3}), "needs estimator='full'"),
])
def test_bad_run_orders(fields, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(_tiny(**fields))


def test_sweep_picks_the_rate_on_validation_lifetimes(tmp_path):
  c = _tiny(steps=4, runs=2, **{"sweep.lrs": (1e-6, 1e-3)})
  result = train.train_and_evaluate(c, str(tmp_path / "sweep"))
  sweep = result["sweep"]
  assert sweep["lrs"] == [1e-6, 1e-3] and sweep["best_run"] in (0, 1)
  assert sweep["best_lr"] == sweep["lrs"][sweep["best_run"]]
  # validation lifetimes differ from the meta-test lifetimes (another seed)
  assert sweep["validation_mse"] != [r["mse"] for r in result["runs"]]
  params, _ = train.restore_params(str(tmp_path / "sweep"), c)
  moved = [float(np.max(np.abs(params["alpha"]["1"][r]))) for r in range(2)]
  assert moved[1] > 100 * moved[0]  # run 1 moved its plasticity at 1e-3, run 0 at 1e-6


def test_sweep_needs_one_run_per_rate():
  c = _tiny(**{"sweep.lrs": (1e-6, 1e-7)})
  with pytest.raises(config_lib.ConfigError, match=r"config.runs=1: expected len\(sweep.lrs\) = 2"):
    config_lib.validate(c)


def test_runs_resume_exactly(tmp_path):
  straight = _tiny(steps=6, runs=2)
  train.train_and_evaluate(straight, str(tmp_path / "a"))
  first = _tiny(steps=3, runs=2)
  train.train_and_evaluate(first, str(tmp_path / "b"))
  train.train_and_evaluate(straight, str(tmp_path / "b"))
  a, _ = train.restore_params(str(tmp_path / "a"), straight)
  b, _ = train.restore_params(str(tmp_path / "b"), straight)
  chex.assert_trees_all_equal(a, b)


def test_oml_procedure_through_train(tmp_path):
  c = _tiny(steps=4, learner="gradient", estimator="oml", **{
      "gradient.lr": 0.003, "meta.ff_milestones": (2,), "meta.lr.ff": 1e-3,
      "oml.reset_row": False, "oml.clamp": 0.0})
  result = train.train_and_evaluate(c, str(tmp_path / "oml"))
  assert np.isfinite(result["mse"])


def test_section_71_extends_a_feature_reuse_run_with_ff_frozen(tmp_path):
  reuse = _tiny(steps=3, plastic_layers=1)
  train.train_and_evaluate(reuse, str(tmp_path / "reuse"))
  source, _ = train.restore_params(str(tmp_path / "reuse"), reuse)
  ext = _tiny(steps=3, plastic_layers=3, extend_from=str(tmp_path / "reuse"),
              **{"meta.lr.ff": 0.0, "flp.init_alpha": 1e-6})
  train.train_and_evaluate(ext, str(tmp_path / "ext"))
  params, _ = train.restore_params(str(tmp_path / "ext"), ext)
  chex.assert_trees_all_equal(params["ff"], source["ff"])
  np.testing.assert_array_equal(params["fb"]["3"]["B"] != source["fb"]["3"]["B"], True)
  assert set(params["alpha"]) == {"1", "2", "3"}
  bad = _tiny(steps=1, plastic_layers=3, extend_from=str(tmp_path / "reuse"))
  with pytest.raises(config_lib.ConfigError, match="config.meta.lr.ff=0.001: expected 0 with"):
    config_lib.validate(bad)


def test_init_ff_from_with_several_runs(tmp_path):
  source = _tiny(steps=1, runs=2)
  train.train_and_evaluate(source, str(tmp_path / "flp"))
  flp, _ = train.restore_params(str(tmp_path / "flp"), source)
  single = _tiny(steps=1)
  train.train_and_evaluate(single, str(tmp_path / "one"))
  one, _ = train.restore_params(str(tmp_path / "one"), single)
  for src, want in ((tmp_path / "flp", lambda r: jax.tree.map(lambda a: a[r], flp["ff"])),
                    (tmp_path / "one", lambda r: one["ff"])):
    g = _tiny(steps=0, runs=2, learner="gradient", init_ff_from=str(src))
    train.train_and_evaluate(g, str(tmp_path / f"grad_{src.name}"))
    params, _ = train.restore_params(str(tmp_path / f"grad_{src.name}"), g)
    for r in range(2):
      chex.assert_trees_all_equal(jax.tree.map(lambda a: a[r], params["ff"]), want(r))
