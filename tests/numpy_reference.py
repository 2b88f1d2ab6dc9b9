"""Float64 NumPy transcriptions of what the authors' code computes.

Written from docs/fidelity.md 2a (regression FLP step), 3 (clamped readout) and 4
(gradient baseline), independently of flpjax, to test it against.
Weights are (out, in); ``plastic`` lists the plastic layer indices.
"""

import numpy as np


def relu(x):
  return np.maximum(x, 0.0)


def forward(ws, bs, x, acts):
  hs = [x]
  for w, b, a in zip(ws, bs, acts):
    z = hs[-1] @ w.T + b
    hs.append(relu(z) if a == "relu" else z)
  return hs


def softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def flp_step(ws, bs, acts, plastic, alpha, fb, beta, x, y, *, rule="oja", signal="error",
             presynaptic="pre", clip_beta=False, clamp_readout=False, output="regression"):
  """One FLP step. ``alpha``, ``fb`` (B, c), ``beta`` are dicts keyed by layer."""
  hs = forward(ws, bs, x, acts)
  n = len(ws)
  if output == "classification":
    target = np.eye(ws[-1].shape[0])[y]
    err = target - softmax(hs[-1])
  else:
    target = y
    err = y - hs[-1]
  s = err if signal == "error" else target
  new = list(ws)
  posts = {}
  for l in plastic:
    if clamp_readout and l == n - 1:
      post = target
    else:
      bb, cc = fb[l]
      f = relu(s @ bb.T + cc)
      be = np.clip(beta[l], 0, 1) if clip_beta else beta[l]
      post = be * f + (1 - be) * hs[l + 1]
    posts[l] = post
    pre = posts[l - 1] if (presynaptic == "post" and (l - 1) in posts) else hs[l]
    hebbian = post.T @ pre
    if rule == "oja":
      new[l] = ws[l] + alpha[l] * (hebbian - (post ** 2).sum(0)[:, None] * ws[l])
    else:
      new[l] = ws[l] + alpha[l] * hebbian
  return new


def sgd_step(ws, bs, acts, plastic, lr, x, y):
  """One SGD step on the MSE (mean over the batch) of the plastic weights and biases.

  Hand-written backprop through the MLP; ``lr`` is a scalar or a dict
  ``{l: (lr_w, lr_b)}``.
  """
  hs = forward(ws, bs, x, acts)
  n = len(ws)
  d = 2.0 * (hs[-1] - y) / y.size  # dL/dy_hat for the mean squared error
  new_w, new_b = list(ws), list(bs)
  for l in range(n - 1, -1, -1):
    if acts[l] == "relu":
      d = d * (hs[l + 1] > 0)
    gw = d.T @ hs[l]
    gb = d.sum(0)
    if l in plastic:
      lw, lb = (lr, lr) if np.isscalar(lr) else lr[l]
      new_w[l] = ws[l] - lw * gw
      new_b[l] = bs[l] - lb * gb
    d = d @ ws[l]
  return new_w, new_b
