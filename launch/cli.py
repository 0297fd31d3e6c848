"""What every launcher shares and that defines no flag: one-line errors, flag parsing, `run`.

Bad user input ends a run with one sentence on stderr that names the bad value and what would be
valid, and exit code 2 (`USAGE_EXIT_CODE`). Only the preparation of a run (`user_input_errors`)
turns exceptions into such sentences; an exception while working is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, NoReturn

from absl import app
from absl import flags

from rznas_jax import data as data_lib
from rznas_jax.compilation_cache import enable_compilation_cache  # re-exported for launchers
from rznas_jax.spaces import macro
from rznas_jax.spaces import nb201

FLAGS = flags.FLAGS
USAGE_EXIT_CODE = 2
USER_ERRORS = (nb201.GenotypeError, macro.StructureError, data_lib.DataError, ValueError, OSError)


def fail(message: str) -> NoReturn:
  """Prints ``message`` as one line on stderr and exits with `USAGE_EXIT_CODE`."""
  sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
  sys.stderr.flush()
  sys.exit(USAGE_EXIT_CODE)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parser, but a bad flag gets one line on stderr instead of a usage dump.

  Logging stays at WARNING unless ``--verbosity`` is given (absl would raise it to INFO), so the
  progress bar is not interleaved with JAX's INFO lines about backends it did not find.
  """
  try:
    argv = FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  if FLAGS["verbosity"].using_default_value:
    FLAGS.verbosity = -1  # WARNING; also stops app.run from raising it to INFO
  return argv


@contextlib.contextmanager
def user_input_errors() -> Iterator[None]:
  """Turns the library's bad-input exceptions into `fail`; everything else propagates."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless it is bad input)
    if not is_user_error(e):
      raise
    fail(str(e))


def is_user_error(error: Exception) -> bool:
  """Whether ``error`` is bad user input (a one-line message), not a bug."""
  if isinstance(error, USER_ERRORS):
    return True
  registry = sys.modules.get("rznas_jax.proxies.base")  # not imported: no proxy was looked up
  return registry is not None and isinstance(error, registry.UnknownProxyError)


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` with one-line flag errors; extra positional arguments are an error too."""

  def checked_main(argv: list[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected argument(s) {' '.join(argv[1:])!r}; every option is a --flag=value.")
    main(argv)

  app.run(checked_main, flags_parser=parse_flags)
