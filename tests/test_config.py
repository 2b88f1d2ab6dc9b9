"""Config validation: every bad field is named, with what is allowed."""

import os

import pytest

from flpjax import config as config_lib

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "experiments", "configs")


def _set(c, path, value):
  node = c
  *parents, last = path.split(".")
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[last] = value


BAD = [
    ("task", "cifar", "config.task='cifar': expected one of 'sine', 'omniglot', 'mini_imagenet'"),
    ("learner", "evolution", "config.learner='evolution': expected one of 'flp', 'gradient'"),
    ("order", "random", "config.order='random': expected one of 'iid', 'continual'"),
    ("flp.rule", "bcm", "config.flp.rule='bcm': expected one of 'oja', 'hebb'"),
    ("flp.signal", "reward", "config.flp.signal='reward': expected one of 'error', 'target'"),
    ("flp.init_beta", 1.5, "config.flp.init_beta=1.5: expected a number in [0.0, 1.0]"),
    ("flp.init_beta", -0.1, "config.flp.init_beta=-0.1: expected a number in [0.0, 1.0]"),
    ("flp.init_alpha", -1e-3, "config.flp.init_alpha=-0.001: expected a number in [0.0, inf]"),
    ("plastic_layers", 0, "config.plastic_layers=0: expected an integer >= 1 and <= 9"),
    ("plastic_layers", 10, "config.plastic_layers=10: expected an integer <= 9 and >= 1"),
    ("meta.steps", -5, "config.meta.steps=-5: expected an integer >= 0"),
    ("meta.batch_size", 0, "config.meta.batch_size=0: expected an integer >= 1"),
    ("meta.remat", "all", "config.meta.remat='all': expected one of 'none', 'step', 'nested'"),
    ("meta.lr.alpha", -1e-8, "config.meta.lr.alpha=-1e-08: expected a number in [0.0, 1.0]"),
    ("meta.lr.ff", float("nan"), "config.meta.lr.ff=nan: expected a finite number"),
    ("sine.batch_size", 0, "config.sine.batch_size=0: expected an integer >= 1"),
    ("sine.n_functions", -1, "config.sine.n_functions=-1: expected an integer >= 1"),
    ("sine.pool_size", 5, "config.sine.pool_size=5: expected 0 (fresh functions) or at least"),
    ("sine.steps_per_function", 2.5, "config.sine.steps_per_function=2.5: expected an integer"),
    ("net.widths", (300, 0), "config.net.widths=(300, 0): expected a non-empty tuple of positive"),
    ("eval.lifetimes", 0, "config.eval.lifetimes=0: expected an integer >= 1"),
    ("checkpoint_every", 0, "config.checkpoint_every=0: expected an integer >= 1"),
    ("gradient.lr", -0.1, None),
    ("seed", -1, "config.seed=-1: expected an integer >= 0"),
    ("meta.max_nonfinite", 0, "config.meta.max_nonfinite=0: expected an integer >= 1"),
    ("flp.clip_beta", "yes", "config.flp.clip_beta='yes': expected True or False"),
    ("meta.nonfinite_backoff", ("alpha", "lr"), "config.meta.nonfinite_backoff=('alpha', "
     "'lr'): expected a tuple of this learner's groups"),
    ("meta.nonfinite_backoff", "alpha", "config.meta.nonfinite_backoff='alpha': expected a "
     "tuple of this learner's groups"),
    ("flp.readout_feedback_floor", -1.0, "config.flp.readout_feedback_floor=-1.0: expected a "
     "number in [0.0, inf]"),
    ("meta.backoff_factor", 0.0, "config.meta.backoff_factor=0.0: expected a number in (0, 1]"),
    ("meta.backoff_factor", 2.0, "config.meta.backoff_factor=2.0: expected a number in [0.0, 1.0]"),
    ("meta.max_loss", -1.0, "config.meta.max_loss=-1.0: expected a number >= 0 (0: no bound)"),
    ("meta.max_loss", "31", "config.meta.max_loss='31': expected a number >= 0 (0: no bound)"),
]


@pytest.mark.parametrize("path, value, message", BAD, ids=[f"{p}={v}" for p, v, _ in BAD])
def test_bad_field_is_named(path, value, message):
  c = config_lib.base_config()
  if path.startswith("gradient."):
    c.learner = "gradient"
    message = f"config.{path}={value!r}: expected a number in [0.0, inf]"
  _set(c, path, value)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert str(e.value).startswith(message), str(e.value)


def test_classification_bounds():
  c = config_lib.base_config()
  c.task = "omniglot"
  c.plastic_layers = 3
  with pytest.raises(config_lib.ConfigError, match="config.plastic_layers=3: expected an integer <= 2"):
    config_lib.validate(c)
  c.plastic_layers = 2
  c.fewshot.ways = 1
  with pytest.raises(config_lib.ConfigError, match="config.fewshot.ways=1: expected an integer >= 2"):
    config_lib.validate(c)
  c.fewshot.ways = 5
  c.fewshot.image_size = 20
  with pytest.raises(config_lib.ConfigError, match="does not fit"):
    config_lib.validate(c)


@pytest.mark.parametrize("name", sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                                        if f.endswith(".py") and not f.startswith("_")))
def test_every_experiment_config_is_valid_and_documents_its_command(name):
  path = os.path.join(CONFIG_DIR, name + ".py")
  config_lib.validate(config_lib.load_file(path))
  assert f"--config=experiments/configs/{name}.py" in open(path).read()


def test_defaults_are_the_paper_regression_settings():
  c = config_lib.base_config()
  config_lib.validate(c)
  assert config_lib.meta_lrs(c) == {"ff": 1e-4, "fb": 1e-4, "alpha": 1e-8, "alpha_readout": 1e-8,
                                    "beta": 1e-4}  # the readout takes alpha's rate
  assert c.flp.init_alpha == 0.0 and c.flp.init_beta == 0.5
  assert c.meta.steps == 20000 and c.eval.lifetimes == 50
  assert tuple(c.net.widths) == (300, 300, 300, 300, 300, 900, 300, 300)




def test_readout_rows_only_for_flp_on_a_few_shot_task_with_a_clamped_readout():
  c = config_lib.base_config()
  c.task, c.plastic_layers = "omniglot", 2
  c.flp.clamp_readout, c.flp.signal, c.flp.readout_rows = True, "target", 5
  config_lib.validate(c)
  c.flp.readout_rows = 4
  with pytest.raises(config_lib.ConfigError, match=r"config.flp.readout_rows=4: expected an "
                     r"integer >= 5 and <= 1000"):
    config_lib.validate(c)
  c.flp.readout_rows, c.flp.clamp_readout = 5, False
  with pytest.raises(config_lib.ConfigError, match="with flp.clamp_readout=True"):
    config_lib.validate(c)
  c.flp.clamp_readout, c.learner = True, "learned_rule"
  with pytest.raises(config_lib.ConfigError, match="None with learner='learned_rule'"):
    config_lib.validate(c)
  s = config_lib.base_config()
  s.flp.readout_rows = 1
  with pytest.raises(config_lib.ConfigError, match="None unless a few-shot task"):
    config_lib.validate(s)
