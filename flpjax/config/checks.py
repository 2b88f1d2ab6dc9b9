"""Field-by-field config checks: each failure is one `ConfigError` line naming the field.

Plug-ins (`flpjax.config.registry`) check their own config sections with
these; ``fail('net.widths', value, 'a tuple of positive integers')`` raises
``config.net.widths=(0,): expected a tuple of positive integers``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable


class ConfigError(ValueError):
  """A config field (or flag) has a bad value; the message names it."""


def field(config, path: str) -> Any:
  """The value of the field ``'a.b.c'`` of ``config``."""
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def fail(path: str, value: Any, expected: str) -> None:
  """Raises ``ConfigError('config.<path>=<value>: expected <expected>')``."""
  raise ConfigError(f"config.{path}={value!r}: expected {expected}")


def check_choice(config, path: str, allowed: Iterable[str]) -> None:
  """The field is one of ``allowed``."""
  value = field(config, path)
  allowed = tuple(allowed)
  if value not in allowed:
    fail(path, value, "one of " + ", ".join(repr(a) for a in allowed))


def check_int(config, path: str, low: int | None = None, high: int | None = None) -> None:
  """The field is an integer (not a bool) in ``[low, high]``."""
  value = field(config, path)
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    fail(path, value, "an integer")
  if low is not None and value < low:
    fail(path, value, f"an integer >= {low}" + (f" and <= {high}" if high is not None else ""))
  if high is not None and value > high:
    fail(path, value, f"an integer <= {high}" + (f" and >= {low}" if low is not None else ""))


def check_float(config, path: str, low: float | None = None, high: float | None = None) -> None:
  """The field is a finite number (not a bool) in ``[low, high]``."""
  value = field(config, path)
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
    fail(path, value, "a finite number")
  if (low is not None and value < low) or (high is not None and value > high):
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    fail(path, value, f"a number in [{lo}, {hi}]")


def check_bool(config, path: str) -> None:
  """The field is True or False."""
  value = field(config, path)
  if not isinstance(value, bool):
    fail(path, value, "True or False")


def check_rates(config, path: str, allow_empty: bool = True) -> None:
  """The field is a tuple of learning rates in (0, 1]."""
  values = field(config, path)
  if (not isinstance(values, (tuple, list)) or (not values and not allow_empty)
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1
             for v in values)):
    fail(path, values, "a tuple of learning rates in (0, 1]")


def check_positive_ints(config, path: str) -> None:
  """The field is a non-empty tuple of positive integers (widths, strides)."""
  values = field(config, path)
  if (not isinstance(values, (tuple, list)) or not values
      or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
             for v in values)):
    fail(path, values, "a non-empty tuple of positive integers")


def check_positive_numbers(config, path: str) -> None:
  """The field is a non-empty tuple of finite numbers > 0."""
  values = field(config, path)
  if (not isinstance(values, (tuple, list)) or not values
      or any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf
             for v in values)):
    fail(path, values, "a non-empty tuple of positive numbers")
