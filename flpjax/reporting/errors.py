"""Bad inputs as one line: the errors the binaries report, and how they report them.

`parse_flags_or_exit` and `exit_with_error` turn bad command lines and bad
inputs into one ``error: ...`` line on stderr and exit status 2;
`define_config_overrides` defines ``--config.<field>`` overrides with the
same reporting; `quiet_libraries` keeps library chatter out of a binary's console.
"""

from __future__ import annotations

import logging as logging_std
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from absl import flags, logging
from ml_collections import config_flags


class WorkdirError(ValueError):
  """A workdir cannot be created, written or read, or does not hold what is needed."""



class NonFiniteError(RuntimeError):
  """Too many meta-steps in a row had a non-finite loss or gradient."""


class _DropLibraryChatter(logging_std.Filter):
  """Keeps orbax's INFO lines and its read-only notices out of the console."""

  def filter(self, record):
    if "orbax" not in record.pathname:
      return True
    return record.levelno >= logging_std.WARNING and "read only" not in record.getMessage()


def _drop_closed_loop_callbacks(unraisable, default=sys.unraisablehook) -> None:
  """Drops the "Event loop is closed" errors of tensorstore reads still in flight.

  When one array of a checkpoint fails to restore, orbax closes its event
  loop while tensorstore still reads the others; their completions then call
  into the closed loop and Python prints each error (an unraisable exception)
  around the binary's one-line message.
  """
  if (isinstance(unraisable.exc_value, RuntimeError) and unraisable.object is None
      and str(unraisable.exc_value) == "Event loop is closed"):
    return
  default(unraisable)


def quiet_libraries() -> None:
  """Keeps library noise out of a binary's console (idempotent).

  Installs `_DropLibraryChatter` on absl's handler and
  `_drop_closed_loop_callbacks` as `sys.unraisablehook`.
  """
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _DropLibraryChatter) for f in handler.filters):
    handler.addFilter(_DropLibraryChatter())
  sys.unraisablehook = _drop_closed_loop_callbacks


def one_line(text: str) -> str:
  """``text`` on one line: its only line, or its first and last joined by ``...``."""
  lines = [l.strip() for l in str(text).replace("\\n", "\n").splitlines() if l.strip()]
  if len(lines) <= 1:
    return lines[0] if lines else ""
  return f"{lines[0]} ... {lines[-1]}"


def exit_with_error(message: Any, code: int = 2) -> NoReturn:
  """Writes ``error: <message>`` (one line) to stderr and exits with ``code``."""
  sys.stderr.write(f"error: {one_line(str(message))}\n")  # one write: no interleaving
  sys.stderr.flush()
  sys.exit(code)


def _failing_flag(exc: BaseException, argv: Sequence[str]) -> str:
  """``flag --name=value`` of the flag (or config field) whose parsing raised ``exc``."""
  name = None
  tb = exc.__traceback__
  while tb is not None:  # the innermost flag (or config override) being parsed
    local = tb.tb_frame.f_locals
    if isinstance(local.get("self"), flags.Flag):
      name = local["self"].name
      if isinstance(local.get("field_path"), str):
        name = f"{name}.{local['field_path']}"
    tb = tb.tb_next
  if name is None:
    return "flags"
  given = [a for a in argv if a.startswith(f"--{name}=")]
  return given[-1].replace("--", "flag --", 1) if given else f"flag --{name}"


def _exit_for_config_flag(exc: BaseException, argv: Sequence[str]) -> NoReturn:
  """Exits with one line naming the config flag (or field) whose parsing raised ``exc``."""
  where = _failing_flag(exc, argv)
  if isinstance(exc, (KeyError, AttributeError)):
    hint = [l for l in str(exc).replace("\\n", "\n").splitlines() if "Did you mean" in l]
    exit_with_error(f"{where}: no such config field"
                    + (f" ({hint[0].strip().rstrip(chr(39))})" if hint else ""))
  exit_with_error(f"{where}: {type(exc).__name__}: {one_line(exc)}")


def define_config_overrides(name: str, config, help_string: str) -> flags.FlagHolder:
  """``config_flags.DEFINE_config_dict(name, config)``: ``--<name>.<field>=<value>`` flags.

  ml_collections reads a config-dict flag's overrides from ``sys.argv`` when the
  flag is defined, before `parse_flags_or_exit` runs; an unknown field
  (``--config.meta.stpes=2``) is reported here as the same one ``error:`` line
  (exit status 2). Read the values given with
  ``config_flags.get_override_values(flags.FLAGS[name])``.
  """
  try:
    return config_flags.DEFINE_config_dict(name, config, help_string)
  except Exception as e:  # noqa: BLE001  # raised by the flag's parser, from sys.argv
    _exit_for_config_flag(e, sys.argv)


def parse_flags_or_exit(argv: Sequence[str]) -> list[str]:
  """An absl ``flags_parser``: bad flags give one ``error:`` line and exit status 2.

  Covers unknown flags (typos), missing required flags, values of the wrong
  type, unknown config fields (``--config.meta.stpes``), config files that
  are missing or fail to load, and stray positional arguments.
  """
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    exit_with_error(e)
  except Exception as e:  # noqa: BLE001  # raised by a config flag's parser
    _exit_for_config_flag(e, argv)
  for name in list(flags.FLAGS):
    flag = flags.FLAGS[name]
    if not flag.present:
      continue
    try:
      filename = config_flags.get_config_filename(flag)
    except TypeError:  # not a config flag
      continue
    try:
      if flag.value is not None:
        flag.value.keys()  # a config file that failed to load raises here
    except OSError as e:
      exit_with_error(f"flag --{name}={filename}: cannot load the config file "
                      f"({one_line(e.__cause__ or e)})")
  if len(rest) > 1:
    exit_with_error(f"unexpected arguments {rest[1:]}: every option is a --flag=value")
  return rest
