"""What every launcher shares: one-line errors, flag parsing, config overrides by flags, `run`.

Bad user input (a `rznas_jax.errors.UserError`: a flag value, a genotype, a data or benchmark
file, a config value) ends a run with one sentence on stderr that names the bad value and what
would be valid, and exit code 2 (`USAGE_EXIT_CODE`). Any other exception is a bug in the library
and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import ast
import contextlib
import sys
from typing import Callable, Iterator, NoReturn, Sequence

from absl import app
from absl import flags

from rznas_jax import malloc
from rznas_jax.errors import UserError

FLAGS = flags.FLAGS
USAGE_EXIT_CODE = 2


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
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # a --config.key=value override
    fail_override(e)
  if FLAGS["verbosity"].using_default_value:
    FLAGS.verbosity = -1  # WARNING; also stops app.run from raising it to INFO
  return argv


def config_flag(default: str, what: str):
  """``--config``: a config file whose keys ``--config.key=value`` overrides (locked: a key that
  does not exist is an error). ml_collections applies the overrides while the flag is defined,
  so a bad one (a misspelt key, a value of the wrong type) is turned into `fail` here."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  try:
    return config_flags.DEFINE_config_file("config", default, f"{what} config file (a get_config() "
                                           "Python file).", lock_config=True)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail_override(e)


def fail_override(error: Exception) -> NoReturn:
  """`fail` for a ``--config.key=value`` that ml_collections could not apply."""
  text = str(error)
  while text[:1] in ("'", '"'):  # ml_collections wraps a KeyError's repr: unwrap it
    try:
      text = str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
      break
  fail(f"a --config override cannot be applied: {text}")


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
  return isinstance(error, UserError)


# --- config overrides: (flag, config key, absl type, help) ------------------------------------------


def define_overrides(table: Sequence[tuple[str, str, str, str]]) -> None:
  """Defines one flag per row, default None (not given); `apply_overrides` copies the given ones
  into the config. Types: string, integer, float, bool, list (joined with commas)."""
  for name, _, kind, help_text in table:
    definer = getattr(flags, f"DEFINE_{kind}")
    definer(name, None, help_text)


def apply_overrides(config, table: Sequence[tuple[str, str, str, str]], section_of_space: str):
  """A copy of ``config`` with every flag of ``table`` that was given; a given flag that belongs
  to another space's config section (``nb201.`` or ``macro.``) is a UserError."""
  config = config.copy_and_resolve_references()
  for name, key, kind, _ in table:
    value = FLAGS[name].value
    if value is None:
      continue
    section = key.split(".")[0] if "." in key else None
    if section not in (None, section_of_space(config)):
      raise UserError(f"--{name} cannot be used with --space={config.space}; it applies to "
                      f"the spaces whose settings are in config.{section}.")
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = ",".join(value) if kind == "list" else value
  return config


def run(main: Callable[[list[str]], None]) -> None:
  """``app.run(main)`` with one-line flag errors; extra positional arguments are an error too.

  Before ``main`` it keeps freed memory in glibc's heap (`rznas_jax.malloc`), unless the
  environment sets ``RZNAS_MALLOC_TUNING=0``: XLA:CPU then reuses its per-call buffers instead of
  faulting them in again on every call (NB201 grad_norm scores about 1.2x faster: docs/scoring.md).
  """

  def checked_main(argv: list[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected argument(s) {' '.join(argv[1:])!r}; every option is a --flag=value.")
    malloc.tune_unless_disabled()
    main(argv)

  app.run(checked_main, flags_parser=parse_flags)
