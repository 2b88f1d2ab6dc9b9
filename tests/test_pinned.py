"""Pinned numbers: short runs whose results must not change when the code is reorganised.

The values below were produced by the code before the estimator / learner /
registry reorganisation on the AMD EPYC development CPU, JAX 0.10.2
(`python tests/test_pinned.py` prints them). On that machine they match bit for
bit (checked by hand with ``FLPJAX_PIN_EXACT=1``); the default tolerance
(relative 1e-4) absorbs the rounding of other CPUs' vector units, and is still
far below what any change to the maths moves (a changed op order in one layer
moves the meta-test metric by 1e-3 or more after a few meta-steps).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import jax
import numpy as np
import pytest

from flpjax import config as config_lib
from flpjax import datasets, train
from flpjax.reporting import metrics

OMNIGLOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                        "shared", "data", "omniglot")


def _sine(learner: str):
  c = config_lib.base_config()
  c.net.widths = (24,) * 4
  c.sine.n_functions = 3
  c.sine.steps_per_function = 4
  c.sine.batch_size = 8
  c.sine.queries_per_function = 8
  c.sine.pool_size = 20
  c.order = "continual"
  c.learner = learner
  c.meta.steps = 6
  c.meta.lr.ff = 1e-3
  c.meta.lr.fb = 1e-3
  c.meta.lr.alpha = 1e-5
  c.meta.lr.beta = 1e-3
  c.flp.init_alpha = 2e-4
  c.eval.lifetimes = 6
  c.eval.batch = 3
  c.log_every = 1
  c.checkpoint_every = 3
  return c


def _omniglot(procedure: str):
  c = config_lib.base_config()
  c.task = "omniglot"
  c.fewshot.image_size = 28
  c.net.strides = (2, 2, 2)
  c.net.channels = 8
  c.net.hidden = 16
  c.net.readout = 1000 if procedure == "oml" else 16
  c.plastic_layers = 2
  c.meta.lr.ff = 1e-3
  c.meta.steps = 3
  c.eval.lifetimes = 4
  c.eval.batch = 2
  c.log_every = 1
  c.checkpoint_every = 3
  if procedure == "oml":
    c.learner = "gradient"
    c.gradient.lr = 0.03
    c.estimator = "oml"
    c.oml.eval_lrs = (0.01, 1e-3)
    c.oml.lr_searches = 1
  else:
    c.flp.signal = "target"
    c.flp.clamp_readout = True
    c.flp.init_beta = 1.0
    c.meta.lr.beta = 0.0
    c.meta.lr.fb = 1e-3
    c.meta.lr.alpha = 1e-2
    c.meta.lr.alpha_readout = 1e-2
  return c


CONFIGS = {
    "sine_flp": lambda: _sine("flp"),
    "sine_gradient": lambda: _sine("gradient"),
    "omniglot_flp": lambda: _omniglot("standard"),
    "omniglot_oml": lambda: _omniglot("oml"),
}


def compute(name: str, workdir: str) -> dict:
  """The numbers a pinned run produces: per-step meta-losses, the evaluation, a params digest."""
  config = CONFIGS[name]()
  result = train.train_and_evaluate(config, workdir)
  losses = [r["loss"] for r in metrics.read_metrics(workdir) if r["kind"] == "train"]
  _, params, _ = train.load_run(workdir)
  leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
  digest = hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()
  metric = "mse" if "mse" in result else "error"
  return {"losses": losses, metric: result[metric], "loss": result.get("loss"),
          "param_sum": float(sum(np.sum(x, dtype=np.float64) for x in leaves)),
          "param_abs_sum": float(sum(np.sum(np.abs(x), dtype=np.float64) for x in leaves)),
          "sha256": digest}


PINNED = {'omniglot_flp': {'error': 0.7800000011920929,
                  'loss': 2.3198105692863464,
                  'losses': [2.8297412395477295, 2.628117322921753, 2.3805575370788574],
                  'param_abs_sum': 425.3796877528657,
                  'param_sum': 16.533243077341467,
                  'sha256': 'd9a2e5a45ed6b3d84ce17f707365a2b1674f93a43f3dd3d702c143c79d4f0825'},
 'omniglot_oml': {'error': 0.9200000017881393,
                  'loss': 4.6986032128334045,
                  'losses': [8.029678344726562, 7.161398887634277, 7.18983268737793],
                  'param_abs_sum': 4827.476305689037,
                  'param_sum': -2.1208947771956446,
                  'sha256': '631de5f128d40fab00a742e9f746d55d567f85481959f9c97f90be5922143c0f'},
 'sine_flp': {'loss': None,
              'losses': [154.92979431152344,
                         80.83219909667969,
                         34.244117736816406,
                         34.58892822265625,
                         7.912502288818359,
                         5.607516288757324],
              'mse': 4.846357583999634,
              'param_abs_sum': 491.2046662376524,
              'param_sum': 3.274349705388886,
              'sha256': '0e99184d27fb378f90707f78c1139b0dc525b7a4839660afdfbf2dc1c8868a4c'},
 'sine_gradient': {'loss': None,
                   'losses': [4.102309226989746,
                              6.960320949554443,
                              6.841760158538818,
                              6.976249694824219,
                              4.347935199737549,
                              3.051058530807495],
                   'mse': 2.878506044546763,
                   'param_abs_sum': 474.74551669092034,
                   'param_sum': -6.2962082439044025,
                   'sha256': 'd937137cd5aa538ec660b97693bfe7d8fca8ee16029454d54b217fbdd951f8e0'}}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pinned_numbers(name, tmp_path, monkeypatch):
  if name.startswith("omniglot") and not os.path.isdir(OMNIGLOT):
    pytest.skip(f"Omniglot is not at {OMNIGLOT}")
  if name.startswith("omniglot"):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, os.path.dirname(OMNIGLOT))
  got = compute(name, str(tmp_path / name))
  want = PINNED[name]
  if os.environ.get("FLPJAX_PIN_EXACT"):
    assert got["sha256"] == want["sha256"], (got, want)
  rtol = 1e-4
  for key in want:
    if key == "sha256" or want[key] is None:
      continue
    atol = 1e-6 * want["param_abs_sum"] if key == "param_sum" else 1e-9
    ok = np.allclose(np.asarray(got[key], np.float64), np.asarray(want[key], np.float64),
                     rtol=rtol, atol=atol)
    assert ok, (key, got[key], want[key])


if __name__ == "__main__":
  import tempfile
  out = {}
  for n in (sys.argv[1:] or sorted(CONFIGS)):
    with tempfile.TemporaryDirectory() as d:
      out[n] = compute(n, os.path.join(d, n))
  print(json.dumps(out, indent=1))
