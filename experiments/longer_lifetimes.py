r"""Lifetimes longer than trained: meta-test networks on k x T steps.

  python experiments/longer_lifetimes.py \
      --workdirs=workdirs/reproduce/table1/mini/flp3_continual/final,workdirs/reproduce/table1/mini/grad3_continual/final \
      --factors=1,2,5,10 --output=results/beyond/longer_lifetimes.json

Every network of each workdir (a `reproduce.py` cell meta-trains several
together) is evaluated, as trained, on meta-test lifetimes whose every function
is shown ``k`` times as many batches (``sine.steps_per_function * k``: a lifetime
of ``k T`` steps with the same functions, order and queries). The JSON has, per
workdir and factor, each network's meta-test MSE, and per pair of workdirs the
claim "the first's MSE grows less from T to the largest k T than the second's",
decided at 2 standard errors over the networks. Sine only (the few-shot
lifetime's length is set by its shots).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from flpjax import config as config_lib
from flpjax import train
from flpjax.experiment import aggregate
from flpjax.reporting import errors, metrics

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Workdirs of meta-trained sine runs.")
_FACTORS = flags.DEFINE_list("factors", ["1", "2", "5", "10"], "Lifetime multipliers k.")
_LIFETIMES = flags.DEFINE_integer("lifetimes", 50, "Meta-test lifetimes per network.",
                                  lower_bound=2)
_OUTPUT = flags.DEFINE_string("output", "results/beyond/longer_lifetimes.json", "Output JSON.")


def evaluate(workdir: str, factors: list[int], lifetimes: int) -> dict:
  """``{'label', 'per_factor': {k: [mse per network]}, 'growth': [mse(k_max) - mse(1)]}``."""
  config, params, step = train.load_run(workdir)
  if config.task != "sine":
    raise config_lib.ConfigError(f"{workdir}: config.task={config.task!r}; expected 'sine'")
  out = {"workdir": workdir, "learner": config.learner, "plastic_layers": config.plastic_layers,
         "order": config.order, "meta_steps": step, "T": config.sine.n_functions
         * config.sine.steps_per_function, "per_factor": {}}
  for k in factors:
    c = config.copy_and_resolve_references()
    c.sine.steps_per_function = config.sine.steps_per_function * k
    c.eval.lifetimes = lifetimes
    out["per_factor"][str(k)] = aggregate.per_network(train.evaluate_params(c, params))
  first, last = out["per_factor"][str(factors[0])], out["per_factor"][str(factors[-1])]
  out["growth"] = [b - a for a, b in zip(first, last)]
  out["summary"] = {k: aggregate.over_networks(v) for k, v in out["per_factor"].items()}
  out["growth_summary"] = aggregate.over_networks(out["growth"])
  return out


def main(argv):
  del argv
  errors.quiet_libraries()
  try:
    factors = [int(k) for k in _FACTORS.value]
    if not factors or min(factors) < 1 or factors != sorted(factors):
      raise ValueError
  except ValueError:
    sys.exit(f"error: --factors={','.join(_FACTORS.value)}: expected increasing integers >= 1")
  if not _WORKDIRS.value:
    sys.exit("error: --workdirs: give at least one workdir of a sine run")
  try:
    rows = [evaluate(w, factors, _LIFETIMES.value) for w in _WORKDIRS.value]
  except (config_lib.ConfigError, FileNotFoundError, train.WorkdirError) as e:
    sys.exit(f"error: {e}")
  claims = []
  for a in rows:
    for b in rows:
      if a is b or a["learner"] == b["learner"]:
        continue
      # The longest lifetime at which both have 2 finite networks (a network whose
      # lifetime diverged is counted in the row's "diverged", not in the mean).
      k = next((k for k in reversed(factors) if k != factors[0]
                and min(a["summary"][str(k)]["networks"], b["summary"][str(k)]["networks"]) >= 2),
               None)
      if k is None:
        continue
      growth = lambda r: aggregate.over_networks([v - u for u, v in zip(r["per_factor"][str(factors[0])],
                                                        r["per_factor"][str(k)])])
      ga, gb = growth(a), growth(b)
      if None in (ga["stderr"], gb["stderr"]):
        continue
      verdict = aggregate.below(ga, gb)
      claims.append({"claim": f"{a['learner']} ({a['plastic_layers']})'s MSE grows less from T "
                              f"to {k}T than {b['learner']} ({b['plastic_layers']})'s",
                     "factor": k, "a": a["workdir"], "b": b["workdir"],
                     "growth_a": ga, "growth_b": gb, "verdict": verdict})
  out = {"factors": factors, "lifetimes": _LIFETIMES.value, "rows": rows, "claims": claims,
         "device": metrics.device_name(), "command": " ".join(sys.argv)}
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  metrics.write_json(_OUTPUT.value, out)
  for r in rows:
    print(r["learner"], r["plastic_layers"], {k: v["mean"] for k, v in r["summary"].items()})
  for c in claims:
    print(f"{c['claim']}: {c['verdict']}")


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags_or_exit)
