"""Bad inputs as one line: the errors the binaries report, and how they report them.

`parse_flags_or_exit` and `exit_with_error` turn bad command lines and bad
inputs into one ``error: ...`` line on stderr and exit status 2;
`quiet_libraries` keeps library chatter out of a binary's console.
"""

from __future__ import annotations

import logging as logging_std
import sys
from typing import Any, NoReturn, Sequence

from absl import flags
from absl import logging
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


def _one_line(text: str) -> str:
  lines = [l.strip() for l in str(text).replace("\\n", "\n").splitlines() if l.strip()]
  if len(lines) <= 1:
    return lines[0] if lines else ""
  return f"{lines[0]} ... {lines[-1]}"


def exit_with_error(message: Any, code: int = 2) -> NoReturn:
  """Writes ``error: <message>`` (one line) to stderr and exits with ``code``."""
  sys.stderr.write(f"error: {_one_line(str(message))}\n")  # one write: no interleaving
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
  except Exception as e:  # pylint: disable=broad-except  # raised by a config flag's parser
    where = _failing_flag(e, argv)
    if isinstance(e, (KeyError, AttributeError)):
      hint = [l for l in str(e).replace("\\n", "\n").splitlines() if "Did you mean" in l]
      exit_with_error(f"{where}: no such config field"
                      + (f" ({hint[0].strip().rstrip(chr(39))})" if hint else ""))
    exit_with_error(f"{where}: {type(e).__name__}: {_one_line(e)}")
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
                      f"({_one_line(e.__cause__ or e)})")
  if len(rest) > 1:
    exit_with_error(f"unexpected arguments {rest[1:]}: every option is a --flag=value")
  return rest
