"""flpjax.nets: the convolution with its own VJP against plain autodiff."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flpjax import nets


def _plain(x, w, stride):
  return jax.lax.conv_general_dilated(x, w, (stride, stride), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("stride,size", [(1, 9), (2, 9), (2, 10), (3, 11)])
def test_conv2d_and_its_gradients_equal_plain_autodiff_in_float64(stride, size):
  with jax.enable_x64(True):
    kx, kw, kd = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (3, size, size + 1, 4), jnp.float64)
    w = jax.random.normal(kw, (3, 3, 4, 5), jnp.float64)
    y = nets.conv2d(x, w, stride)
    np.testing.assert_array_equal(y, _plain(x, w, stride))
    dy = jax.random.normal(kd, y.shape, jnp.float64)
    got = jax.vjp(lambda x, w: nets.conv2d(x, w, stride), x, w)[1](dy)
    want = jax.vjp(lambda x, w: _plain(x, w, stride), x, w)[1](dy)
    for g, h in zip(got, want):
      np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-12)


def test_conv2d_under_vmap_jit_and_second_order():
  kx, kw = jax.random.split(jax.random.key(1))
  x = jax.random.normal(kx, (2, 3, 8, 8, 2))   # a leading axis of independent runs
  w = jax.random.normal(kw, (2, 3, 3, 2, 4)) * 0.3

  def loss(conv, w, x):
    return jnp.sum(jnp.tanh(conv(x, w, 2)) ** 2)

  for order in (1, 2):
    grads = []
    for conv in (nets.conv2d, _plain):
      f = lambda w, x, conv=conv: loss(conv, w, x)
      g = jax.grad(f)
      if order == 2:  # gradient of a gradient's norm (meta-gradients through inner SGD)
        g = jax.grad(lambda w, x, g=g: jnp.sum(g(w, x) ** 2))
      grads.append(jax.jit(jax.vmap(g))(w, x))
    np.testing.assert_allclose(grads[0], grads[1], rtol=2e-5, atol=1e-5)


def test_conv_classifier_gradients_match_plain_convolutions():
  layers = nets.conv_classifier(8, 16, 5, (2, 1, 2))
  params = nets.init(jax.random.key(2), layers, (20, 20, 1))
  x = jax.random.uniform(jax.random.key(3), (4, 20, 20, 1))

  def loss(params):
    return jnp.sum(nets.apply(layers, params, x) ** 2)

  got = jax.grad(loss)(params)
  plain = jax.lax.conv_general_dilated

  def loss_plain(params):
    h = x
    for layer, p in zip(layers, params):
      if isinstance(layer, nets.Conv):
        h = jax.nn.relu(plain(h, p["w"], (layer.stride,) * 2, "VALID",
                              dimension_numbers=("NHWC", "HWIO", "NHWC")) + p["b"])
      else:
        h = nets.apply_layer(layer, p, h)
    return jnp.sum(h.reshape(h.shape[0], -1) ** 2)

  want = jax.grad(loss_plain)(params)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)
