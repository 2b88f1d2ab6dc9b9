"""What a task is: `Task` and its loss and metrics (defined in `flpjax.types`); stream orders."""

import jax
import jax.numpy as jnp

from flpjax.types import Episode, Task, loss_fn, metrics  # noqa: F401  (the task API)

#: The orders of a lifetime's support stream: shuffled, or one function / class after another.
ORDERS = ("iid", "continual")


def order_flags(orders) -> jax.Array:
  """``(R,)`` booleans, True for ``'continual'``: one stream order per run, as data that
  `meta.make_runs_meta_step` maps over (a task made with a tuple of orders)."""
  orders = tuple(orders)
  if not orders or any(o not in ORDERS for o in orders):
    raise ValueError(f"orders={orders!r}: expected a non-empty tuple of {ORDERS}")
  return jnp.asarray([o == "continual" for o in orders])
