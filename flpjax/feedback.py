"""Feedback: from the target (or the error) to the post-synaptic activity.

FLP sends a signal ``s`` from the output directly to every plastic layer ``l``
(as in direct feedback alignment) and moves that layer's activity towards it:

  f_l    = ReLU(s @ B_l.T + c_l)                    # project(...)
  post_l = beta_l * f_l + (1 - beta_l) * h_l         # mix(...)

where ``h_l`` is the feed-forward activity. The signal is the prediction error
(regression, ``y - y_hat``; classification, ``onehot - softmax(logits)``) or
the raw target (docs/fidelity.md 2.1-2.3, 3). Nothing is detached: meta-gradients
flow through the error, as in the reference.

Shapes: ``s`` is ``(B, m)``, ``B_l`` is ``(out_l, m)``, ``c_l`` is ``(out_l,)``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Signal = Literal["error", "target"]
Output = Literal["regression", "classification"]

SIGNALS = ("error", "target")


def encode_target(y: jax.Array, output: Output, width: int) -> jax.Array:
  """Targets as the network's output space ``(B, m)``.

  Regression targets ``(B, m)`` are returned as they are; classification labels
  ``(B,)`` become one-hot ``(B, width)`` (``width``: the readout's, ``m``).
  """
  if output == "classification":
    return jax.nn.one_hot(y, width, dtype=jnp.float32)
  return y


def signal(target: jax.Array, y_hat: jax.Array, kind: Signal, output: Output) -> jax.Array:
  """The feedback signal ``(B, m)``.

  Args:
    target: encoded target ``(B, m)`` (see `encode_target`).
    y_hat: the network's output ``(B, m)`` (logits for classification).
    kind: ``'error'`` or ``'target'``.
    output: ``'regression'`` (error ``y - y_hat``) or ``'classification'``
      (error ``onehot - softmax(logits)``, i.e. minus the gradient of the
      cross-entropy with respect to the logits).
  """
  if kind == "target":
    return target
  if kind != "error":
    raise ValueError(f"unknown feedback signal {kind!r}; expected one of {SIGNALS}")
  if output == "classification":
    return target - jax.nn.softmax(y_hat, axis=-1)
  return target - y_hat


def project(fb: dict, s: jax.Array) -> jax.Array:
  """``ReLU(s @ B.T + c)``: the feedback-driven activity ``(B, out)``.

  ``fb`` is ``{'B': (out, m), 'c': (out,)}``; the signal ``s`` is ``(B, m)``.
  """
  return jax.nn.relu(s @ fb["B"].T + fb["c"])


def mix(h: jax.Array, f: jax.Array, beta: jax.Array, clip: bool = False) -> jax.Array:
  """``beta * f + (1 - beta) * h``; with ``clip``, ``beta`` is clipped to [0, 1].

  ``h`` (feed-forward) and ``f`` (feedback) activities are ``(B, out)``, ``beta``
  is ``()`` (or broadcasts); the result is ``(B, out)``.
  """
  if clip:
    beta = jnp.clip(beta, 0.0, 1.0)
  return beta * f + (1.0 - beta) * h
