"""Every public function or class of the library that takes or returns arrays states their shapes.

Issue 19: a public callable whose annotations name an array (``jax.Array``,
``np.ndarray``) or a pytree of arrays (``Params``, ``FastState``, ``Episode``,
...) must say, in its docstring, the shapes involved: a shape in backticks such
as ``(T, B, *input_shape)``, ``(out, in)``, ``(n,)`` or ``()`` (the project's
letters: T steps, B batch, Q queries, L lifetimes, R runs, in/out widths, m the
readout's width). A callable whose only array-like annotations are pytrees may
instead refer to the one place that documents the tree (`param_labels`,
`Learner`, `Episode`, ...).

The check reads annotation strings only (no tracing, nothing compiled).
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

import flpjax

MODULES = (
    "flpjax.lifetime", "flpjax.meta", "flpjax.evaluate", "flpjax.nets", "flpjax.plasticity",
    "flpjax.feedback", "flpjax.types", "flpjax.baselines", "flpjax.trunks",
    "flpjax.learners.base", "flpjax.learners.dfa", "flpjax.learners.fa", "flpjax.learners.flp",
    "flpjax.learners.gradient", "flpjax.learners.plastic_feedback", "flpjax.learners.rules",
    "flpjax.learners.trunk", "flpjax.estimators.base", "flpjax.estimators.es",
    "flpjax.estimators.full", "flpjax.estimators.truncated", "flpjax.tasks.sine",
    "flpjax.tasks.fewshot", "flpjax.analysis", "flpjax.parallel", "flpjax.protocols.oml",
)

#: Annotations naming a plain array.
ARRAY = re.compile(r"(?<![\w.])(?:jax\.Array|np\.ndarray|Array)\b")
#: Annotations naming a pytree of arrays (its layout may be documented elsewhere).
TREE = re.compile(r"(?<![\w])(?:(?:nets|types)\.)?(?:Params|FastState|Episode|TrainState|State|"
                  r"PESState|Pool)\b")
#: Parameters that are a single PRNG key (shape ``()`` always): not a reason to ask for shapes.
KEY_PARAMS = ("key",)

#: Text in double backticks.
CODE = re.compile(r"``(.+?)``", re.S)
#: A parenthesised tuple not preceded by a name (``f(a, b)`` is a call, not a shape).
TUPLE = re.compile(r"(?<![\w\])'])\(([^()]*)\)")
#: Dimension names of the project: single capitals (``T``, ``B``, ``H'``, ``P``...), with
#: suffixes (``B_l``, ``out_l``, ``in_{l+1}``), numbers, ``...``, ``*input_shape``, ``n_...``.
DIM = re.compile(r"^(?:\d+|\.\.\.|\*\w+|[A-Z](?:'|_\w+|\d)?|(?:in|out)(?:_\w+)?|m|d|n|k|q|"
                 r"features|kernel|classes|images_per_class|width|n_\w+)$")
#: Other names a shape may hold (``(searches, n_lrs)``); they do not make it one.
WORD = re.compile(r"^[a-z_][\w']*$")
#: References to the one place that documents a pytree's layout.
TREE_DOC = re.compile(r"`+(?:[\w.]*\.)?(?:param_labels|Learner|Episode|TrainState|State|"
                      r"PESState)`+")


def is_shape(text: str) -> bool:
  """Whether ``text`` (the inside of double backticks) holds a shape such as ``(T, B, m)``.

  A shape is a parenthesised tuple (not a call) of dimension names and numbers,
  at least one a dimension name (or all numbers, e.g. ``(11,)``); ``()`` is a scalar.
  """
  for inner in TUPLE.findall(text):
    inner = re.sub(r"_\{[^}]*\}", "_l", inner.strip())  # out_{l+1} -> out_l
    if not inner:
      return True  # ``()``
    if not re.fullmatch(r"[\w\s,+*.'\[\]]*", inner):
      continue  # an expression (``(x / 255 - mean)``), not a shape
    tokens = [t for t in re.split(r"[\s,+\[\]]+", inner) if t]
    if not tokens or not all(DIM.match(t) or WORD.match(t) for t in tokens):
      continue
    if (any(DIM.match(t) and not t.isdigit() for t in tokens)
        or all(t.isdigit() for t in tokens)):
      return True
  return False


def has_shape(doc: str) -> bool:
  return any(is_shape(code) for code in CODE.findall(doc))


def _annotation_text(annotation) -> str:
  if annotation is inspect.Parameter.empty or annotation is inspect.Signature.empty:
    return ""
  return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def annotations(obj) -> list[tuple[str, str]]:
  """``(name, annotation string)`` of the parameters and return of ``obj`` (a class: its
  fields and its own ``__call__``)."""
  out = []
  if inspect.isclass(obj):
    for name, a in vars(obj).get("__annotations__", {}).items():
      out.append((name, _annotation_text(a)))
    call = vars(obj).get("__call__")
    if call is not None:
      out += [(n, a) for n, a in annotations(call) if n != "self"]
    return out
  try:
    sig = inspect.signature(obj)
  except (TypeError, ValueError):
    return out
  for name, p in sig.parameters.items():
    out.append((name, _annotation_text(p.annotation)))
  out.append(("return", _annotation_text(sig.return_annotation)))
  return out


def public_callables():
  """``(qualified name, object)`` of every public function and class the issue covers."""
  seen = {}
  for module_name in MODULES:
    module = importlib.import_module(module_name)
    for name, obj in vars(module).items():
      if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
        continue
      if getattr(obj, "__module__", None) != module_name:
        continue  # imported from elsewhere: checked where it is defined
      seen.setdefault(id(obj), (f"{module_name}.{name}", obj))
  for name in flpjax.__all__:
    obj = getattr(flpjax, name)
    if inspect.isfunction(obj) or inspect.isclass(obj):
      seen.setdefault(id(obj), (f"flpjax.{name}", obj))
  return sorted(seen.values(), key=lambda item: item[0])


def needs_shapes(obj) -> tuple[bool, bool]:
  """``(arrays, trees)``: whether ``obj``'s annotations name arrays (other than a PRNG
  ``key``) or pytrees of arrays."""
  arrays = trees = False
  for name, text in annotations(obj):
    if ARRAY.search(text) and name not in KEY_PARAMS:
      arrays = True
    if TREE.search(text):
      trees = True
  return arrays, trees


def documents_shapes(obj) -> bool:
  doc = inspect.getdoc(obj) or ""
  arrays, trees = needs_shapes(obj)
  if has_shape(doc):
    return True
  return trees and not arrays and bool(TREE_DOC.search(doc))


CALLABLES = [(name, obj) for name, obj in public_callables() if any(needs_shapes(obj))]


def test_the_check_sees_the_api():
  names = {name for name, _ in CALLABLES}
  for expected in ("flpjax.lifetime.run", "flpjax.lifetime.predict", "flpjax.nets.forward",
                   "flpjax.types.Episode", "flpjax.learners.base.Learner",
                   "flpjax.plasticity.oja", "flpjax.analysis.fit_readout",
                   "flpjax.protocols.oml.sample_oml_episode", "flpjax.meta.TrainState"):
    assert expected in names, expected
  assert len(CALLABLES) > 80


@pytest.mark.parametrize("text", ["``(T, B, *input_shape)``", "``(out, in)``", "``(n,)``",
                                  "``()``", "``xs (N k, 1, H, W, C)``", "``([L,] 2)``",
                                  "``(out_l, in_l)``", "``(n_blocks + 1, N, m)``",
                                  "``(loss (), fast_end)``", "``(11,)``",
                                  "``(out, out_{l+1})``", "``(searches, n_lrs)``"])
def test_shapes_are_recognised(text):
  assert has_shape(text)


@pytest.mark.parametrize("text", ["``f(params, key, data)``", "``(state, metrics)``",
                                  "(T, B) outside backticks", "``(grads, state, metrics)``",
                                  "``learner.init(params, key)``", "`(out, in)`",
                                  "``(x / 255 - mean) / std``", "``(None, 0)``",
                                  "``(k_episode, k_init)``", "``(h, y)``"])
def test_non_shapes_are_not(text):
  assert not has_shape(text)


def test_a_docstring_without_shapes_fails():
  def predict(x: "jax.Array") -> "jax.Array":
    """Outputs of the network on raw inputs."""
    return x

  def trees_only(params: "Params") -> "Params":
    """Meta-parameters, laid out as `param_labels` says."""
    return params

  assert needs_shapes(predict) == (True, False)
  assert not documents_shapes(predict)
  predict.__doc__ = "Outputs ``(N, m)`` on raw inputs ``(N, *input_shape)``."
  assert documents_shapes(predict)
  assert documents_shapes(trees_only)


@pytest.mark.parametrize("name, obj", CALLABLES, ids=[name for name, _ in CALLABLES])
def test_public_docstring_states_shapes(name, obj):
  assert documents_shapes(obj), (
      f"{name}: its annotations name arrays or pytrees of arrays, but its docstring gives no "
      "shape in double backticks (e.g. ``(T, B, *input_shape)``, ``(out, in)``, ``()``)"
      + (" or reference to the tree's documentation (`param_labels`, `Learner`, `Episode`)"
         if needs_shapes(obj) == (False, True) else ""))
