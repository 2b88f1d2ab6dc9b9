"""Your own local plasticity rule, meta-learned with the rest.

A rule is a `flpjax.learners.rules.LearnedRule(init, update)`:
``init(key, layer, (out, in))`` returns one plastic layer's rule parameters
(any pytree; together they form the meta-parameter group ``'rule'``), and
``update(rule_params, w (out, in), pre (B, in), post (B, out), alpha (out, in))``
returns the new weights, summing over the batch. Feedback, the readout and
the per-synapse plasticity ``alpha`` stay FLP's (`flpjax.learners.learned_rule`).
Two rules: Oja's rule with a meta-learned gain per layer (built on
`flpjax.plasticity.oja`), and one written from scratch, Hebb with a
meta-learned weight decay.

    python examples/own_plasticity_rule.py [--steps=10] [--rule=decaying_hebb|gain_oja|both]
"""

import argparse

import jax
import jax.numpy as jnp

import flpjax
from flpjax import estimators, learners, nets, plasticity
from flpjax.learners import rules
from flpjax.tasks import sine

#: Oja's rule, ``w + g alpha (post^T pre - post^2 w)``, with a meta-learned gain ``g`` per layer.
gain_oja = rules.LearnedRule(
    init=lambda key, layer, shape: jnp.ones(()),
    update=lambda g, w, pre, post, alpha: plasticity.oja(w, pre, post, g * alpha))


def _decay_init(key, layer, shape):
  del key, layer, shape
  return {"decay": jnp.asarray(0.1)}


def _decay_update(p, w, pre, post, alpha):
  """``w + alpha (post^T pre - decay w)``, batch-summed: Hebb with a meta-learned weight decay."""
  return w + alpha * (post.T @ pre - p["decay"] * w)


#: A rule written from scratch: Hebb with a meta-learned decay per layer.
decaying_hebb = rules.LearnedRule(init=_decay_init, update=_decay_update)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=10, help="meta-steps per rule")
  parser.add_argument("--rule", default="decaying_hebb",
                      choices=("decaying_hebb", "gain_oja", "both"))
  args = parser.parse_args(argv)
  chosen = {"decaying_hebb": decaying_hebb, "gain_oja": gain_oja}
  if args.rule != "both":
    chosen = {args.rule: chosen[args.rule]}

  size = dict(n_functions=2, steps_per_function=4, batch_size=4, queries_per_function=8)
  task = sine.make_task(pool=sine.sample_functions(jax.random.key(1), 50), **size)
  results = {}
  for name, rule in chosen.items():
    learner = learners.learned_rule(nets.regression_mlp((32, 32)), task.input_shape, 2,
                                    rule=rule, init_alpha=1e-3)
    opt = flpjax.make_optimizer({"ff": 1e-3, "fb": 1e-3, "alpha": 1e-4, "beta": 1e-3,
                                 "rule": 1e-2}, learner)
    state = flpjax.init_state(learner, opt, jax.random.key(0))
    step = flpjax.make_meta_step(estimators.full.make(learner, task), opt)
    losses = []
    for s in range(args.steps):
      state, metrics = step(state, jax.random.key(s), task.data)
      losses.append(float(metrics["loss"]))
    print(f"{name}: meta-loss {losses[0]:.3f} -> {losses[-1]:.3f}; rule parameters "
          f"{jax.tree.map(lambda a: round(float(a), 4), state.params['rule'])}")
    results[name] = losses
  return results

if __name__ == "__main__":
  main()
