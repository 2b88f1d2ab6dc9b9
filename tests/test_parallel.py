"""Independent runs as one vmapped program, sharded over (fake) CPU devices."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import learners, meta, nets, parallel
from flpjax.estimators import full
from flpjax.tasks import sine


def _setup(runs=4):
  learner = learners.flp(nets.regression_mlp((12, 12)), (4,), 2, init_alpha=1e-3)
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(9), 20), n_functions=3,
                        steps_per_function=2, batch_size=4, queries_per_function=3)
  opt = meta.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-5, "beta": 1e-3}, learner)
  keys = jax.random.split(jax.random.key(0), runs)
  return learner, task, opt, keys


def test_runs_step_equals_independent_steps():
  learner, task, opt, keys = _setup()
  states = meta.init_states(learner, opt, keys)
  states = states._replace(opt_state=meta.set_learning_rates(
      states.opt_state, {"alpha": jnp.array([1e-5, 1e-4, 1e-3, 1e-2])}))
  step_keys = jax.random.split(jax.random.key(1), 4)
  single = meta.make_meta_step(full.make(learner, task), opt)
  want = []
  for r in range(4):
    s = jax.tree.map(lambda a: a[r], states)
    want.append(single(s, step_keys[r], task.data)[0].params)
  before = np.asarray(states.params["alpha"]["1"])
  got, metrics = meta.make_runs_meta_step(full.make(learner, task), opt)(states, step_keys, task.data)
  assert metrics["loss"].shape == (4,)
  for r in range(4):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[r], b, rtol=1e-5, atol=1e-7),
                 got.params, want[r])
  moves = [float(jnp.max(jnp.abs(got.params["alpha"]["1"][r] - before[r])))
           for r in range(4)]
  np.testing.assert_allclose(moves, [1e-5, 1e-4, 1e-3, 1e-2], rtol=1e-3)


def test_no_sharding_on_one_device():
  assert parallel.runs_sharding(4, jax.devices()[:1]) is None


FOUR_DEVICES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import test_parallel as t
    from flpjax import meta, parallel
    from flpjax.estimators import full
    assert len(jax.devices()) == 4, jax.devices()
    learner, task, opt, keys = t._setup()
    states = meta.init_states(learner, opt, keys)
    sharded = parallel.shard_runs(states)
    leaf = sharded.params["ff"][0]["w"]
    assert len(leaf.sharding.device_set) == 4, leaf.sharding
    step = meta.make_runs_meta_step(full.make(learner, task), opt)
    step_keys = jax.random.split(jax.random.key(1), 4)
    out, m = step(sharded, step_keys, task.data)
    assert len(out.params["ff"][0]["w"].sharding.device_set) == 4
    ref, _ = step(meta.init_states(learner, opt, keys), step_keys, task.data)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 out.params, ref.params)
    print("OK", m["loss"].shape)
""")


@pytest.fixture(scope="module", autouse=True)
def four_devices(request):
  """The 4-device script, started before this module's first test when the test that reads
  it is selected: it then runs beside the in-process tests (on another CPU) instead of
  after them."""
  if not any(item.name == "test_sharded_runs_on_four_cpu_devices"
             for item in request.session.items):
    yield None
    return
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.Popen([sys.executable, "-c", FOUR_DEVICES], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  yield proc
  if proc.poll() is None:
    proc.kill()
    proc.communicate()


def test_sharded_runs_on_four_cpu_devices(four_devices):
  stdout, stderr = four_devices.communicate(timeout=300)
  assert four_devices.returncode == 0, stderr[-3000:]
  assert "OK (4,)" in stdout
