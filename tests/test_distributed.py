"""Runs over several processes (`jax.distributed`, Gloo CPU collectives) give one process's numbers.

Two local processes (one CPU device each) connected by `parallel.initialize`
meta-train 4 runs for 3 meta-steps, each process holding 2 of them; a third,
single process (2 CPU devices) computes the same 4 runs sharded over its two
devices, and also all 4 on one device. The two-process results, gathered on
every process, equal the one-process sharded ones bit for bit (each device
runs the same program on the same 2 runs), and the one-device ones to float32
rounding: XLA compiles the 4-wide vmap differently from the 2-wide one.
"""

import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from flpjax import meta, parallel

import test_parallel

RUNS, STEPS = 4, 3
TIMEOUT_S = 480  # all three together: about 80 s of CPU, minutes on a loaded 2-core machine

WORKER = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from flpjax import meta, parallel
    from flpjax.estimators import full
    out, pid, nproc, address = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if nproc > 1:
      parallel.initialize(address, nproc, pid, initialization_timeout=120)
      parallel.initialize(address, nproc, pid)  # a no-op the second time
    assert jax.process_count() == nproc, jax.process_count()
    import test_parallel as t
    R, STEPS = %d, %d

    def train(devices):
      learner, task, opt, keys = t._setup(runs=R)
      states = meta.init_states(learner, opt, keys)
      states = states._replace(opt_state=meta.set_learning_rates(
          states.opt_state, {"alpha": jnp.array([1e-5, 3e-5, 1e-4, 3e-4])}))
      states, keys = parallel.shard_runs((states, keys), devices)
      step = meta.make_runs_meta_step(full.make(learner, task), opt)
      metrics = []
      for s in range(STEPS):
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, s)
        states, m = step(states, step_keys, task.data)
        metrics.append(parallel.gather_runs(m))
      return states, keys, metrics

    states, keys, metrics = train(None)
    got = {"params": parallel.gather_runs(states.params), "metrics": metrics,
           "keys": jax.random.key_data(parallel.gather_runs(keys))}
    mine = parallel.local_runs(R)
    leaf = states.params["ff"][0]["w"]
    if nproc > 1:  # this process holds only its runs
      assert mine == slice(pid * R // nproc, (pid + 1) * R // nproc), mine
      assert not leaf.is_fully_addressable
      held = sorted((s.index[0].start, s.index[0].stop) for s in leaf.addressable_shards)
      assert held == [(mine.start, mine.stop)], held
      try:
        parallel.runs_sharding(R - 1)
        raise AssertionError("runs_sharding of an uneven run count did not raise")
      except ValueError:
        pass
      # each process building only its own runs gives the same initial states
      learner, task, opt, keys_all = t._setup(runs=R)
      local = parallel.global_runs(meta.init_states(learner, opt, keys_all[mine]), R)
      got["init_local"] = parallel.gather_runs(local.params)
      got["init_full"] = parallel.gather_runs(meta.init_states(learner, opt, keys_all).params)
    else:
      assert mine == slice(0, R)
      assert len(leaf.sharding.device_set) == len(jax.devices()) == 2, leaf.sharding
      one_states, _, one_metrics = train(jax.devices()[:1])
      got["one_device"] = {"params": parallel.gather_runs(one_states.params),
                           "metrics": one_metrics}
    flat = {jax.tree_util.keystr(p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(got)[0]}
    np.savez(out, **flat)
    print("OK", pid, nproc, flush=True)
""") % (RUNS, STEPS)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_all(commands, tmp_path, timeout_s):
  """Starts every ``(name, argv, env)``; kills them all when one fails or time runs out.

  Returns ``{name: (returncode or None if killed, stdout, stderr)}``.
  """
  procs = {}
  for name, argv, env in commands:
    out, err = open(tmp_path / f"{name}.out", "w"), open(tmp_path / f"{name}.err", "w")
    procs[name] = (subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True), out, err)
  deadline = time.monotonic() + timeout_s
  try:
    while time.monotonic() < deadline:
      codes = [p.poll() for p, _, _ in procs.values()]
      if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
        break
      time.sleep(0.5)
  finally:
    for p, out, err in procs.values():
      if p.poll() is None:
        p.kill()
      p.wait()
      out.close()
      err.close()
  killed = {name for name, (p, _, _) in procs.items() if p.returncode < 0}
  return {name: (None if name in killed else p.returncode,
                 (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text())
          for name, (p, _, _) in procs.items()}


def _report(results) -> str:
  lines = []
  for name, (code, out, err) in results.items():
    status = "killed (timeout, or another process failed)" if code is None else f"exit {code}"
    lines.append(f"--- {name}: {status}\nstdout: {out[-1000:]}\nstderr: {err[-3000:]}")
  return "\n".join(lines)


def _env(devices: int) -> dict:
  tests = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
  env["XLA_FLAGS"] = " ".join(
      [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
      + ([f"--xla_force_host_platform_device_count={devices}"] if devices > 1 else []))
  return env


def test_two_processes_give_the_numbers_of_one(tmp_path):
  try:
    address = f"localhost:{_free_port()}"
  except OSError as e:
    pytest.skip(f"cannot open a localhost port for the coordinator: {e}")
  outs = {name: str(tmp_path / f"{name}.npz") for name in ("p0", "p1", "single")}
  commands = [(f"p{i}", [sys.executable, "-c", WORKER, outs[f"p{i}"], str(i), "2", address],
               _env(1)) for i in range(2)]
  commands.append(("single", [sys.executable, "-c", WORKER, outs["single"], "0", "1", "-"],
                   _env(2)))
  results = _run_all(commands, tmp_path, TIMEOUT_S)
  assert all(code == 0 for code, _, _ in results.values()), _report(results)

  p0, p1, single = (dict(np.load(outs[n])) for n in ("p0", "p1", "single"))
  # gathered on every process
  assert p0.keys() == p1.keys()
  for k in p0:
    np.testing.assert_array_equal(p0[k], p1[k], err_msg=f"process 1's {k}")
  # each process building its own slice = every process building all runs
  init_keys = [k for k in p0 if k.startswith("['init_local']")]
  assert init_keys
  for k in init_keys:
    np.testing.assert_array_equal(p0[k], p0[k.replace("init_local", "init_full")], err_msg=k)
  # the numbers of one process: sharded over 2 devices exactly, on one device to rounding
  shared = [k for k in single if not k.startswith("['one_device']")]
  assert sorted(shared) == sorted(k for k in p0 if not k.startswith("['init_"))
  for k in shared:
    np.testing.assert_array_equal(p0[k], single[k], err_msg=f"{k}: 2 processes vs 1 process")
  assert p0["['metrics'][0]['loss']"].shape == (RUNS,)
  assert np.all(p0[f"['metrics'][{STEPS - 1}]['finite']"])
  one = [k for k in single if k.startswith("['one_device']")]
  assert len(one) == len(shared) - 1  # all but the keys
  for k in one:
    np.testing.assert_allclose(p0[k.replace("['one_device']", "")], single[k], rtol=1e-5,
                               atol=1e-7, err_msg=f"{k}: 2 processes vs 1 device")
  # the runs moved, and differently
  learner, _, opt, keys = test_parallel._setup(RUNS)
  before = np.asarray(meta.init_states(learner, opt, keys).params["ff"][0]["w"])
  after = p0["['params']['ff'][0]['w']"]
  assert np.all(np.abs(after - before).reshape(RUNS, -1).max(axis=1) > 0)


def test_one_process_helpers():
  learner, _, opt, keys = test_parallel._setup()
  states = meta.init_states(learner, opt, keys)
  assert parallel.local_runs(4) == slice(0, 4)
  assert parallel.global_runs(states) is states  # one process, one device: as it is
  got = parallel.gather_runs({"w": states.params["ff"][0]["w"], "keys": keys, "step": states.step})
  assert isinstance(got["w"], np.ndarray) and isinstance(got["step"], np.ndarray)
  np.testing.assert_array_equal(got["w"], states.params["ff"][0]["w"])
  np.testing.assert_array_equal(jax.random.key_data(got["keys"]), jax.random.key_data(keys))
  assert parallel.mesh(jax.devices()[:1]).axis_names == (parallel.AXIS,)
