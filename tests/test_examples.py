"""Every script in examples/ runs, at its tiny size with fewer meta-steps, and is listed.

All of them run in one subprocess (one JAX import) with XLA's backend
optimisation turned down (``--xla_backend_optimization_level=0``): compiling,
not computing, is what takes the time at these sizes, and what the test checks
is that each script still works with the library as it is.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")

DRIVER = r'''
import json, runpy, sys, time
runs = json.loads(sys.argv[1])
out = {}
for name, argv in runs:
  t = time.perf_counter()
  main = runpy.run_path(name)["main"]
  try:
    result = main(argv)
    error = None
  except SystemExit as e:
    result, error = None, str(e.code)
  out[name + " " + " ".join(argv)] = {"result": result, "error": error,
                                      "s": round(time.perf_counter() - t, 2)}
print("RESULTS " + json.dumps(out))
'''


def _scripts():
  return sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))


def test_every_example_runs_and_is_listed(tmp_path):
  scripts = _scripts()
  assert len(scripts) >= 5
  listed = open(os.path.join(EXAMPLES, "README.md")).read()
  for name in scripts:
    assert f"`{name}`" in listed, f"examples/README.md does not list {name}"
  missing = str(tmp_path / "none.npz")
  runs = [(os.path.join(EXAMPLES, name), ["--steps=3"]) for name in scripts]
  runs.append((os.path.join(EXAMPLES, "own_dataset.py"), [f"--data={missing}"]))
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                                    + " --xla_backend_optimization_level=0").strip())
  proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(runs)], cwd=tmp_path,
                        capture_output=True, text=True, check=False, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")][-1]
  results = {os.path.basename(k.split(" ")[0]) + (" missing" if missing in k else ""): v
             for k, v in json.loads(line[len("RESULTS "):]).items()}
  print({k: v["s"] for k, v in results.items()})
  for name in scripts:
    assert results[name]["error"] is None, (name, results[name])
  loop = results["own_training_loop.py"]["result"]
  assert loop["after"] < loop["before"]  # meta-training helps, even after 3 steps
  assert all(isinstance(v, float) for v in results["sweep_learning_rates.py"]["result"])
  assert len(results["flax_trunk.py"]["result"]["losses"]) == 3
  assert list(results["own_plasticity_rule.py"]["result"]) == ["decaying_hebb"]
  # A missing data file: one line saying where the arrays go and which flag names them.
  error = results["own_dataset.py missing"]["error"]
  assert error.startswith(f"error: --data={missing}: no such file; put your arrays there")
  assert "\n" not in error and "leave --data out" in error
