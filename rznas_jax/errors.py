"""The one line between a user's mistake and a bug.

Every exception that a user can cause with a bad flag, genotype, file or config value derives
from `UserError` (and from ValueError, which most of them were before, so old ``except``
clauses still hold). The launchers turn a `UserError` into one sentence on stderr and exit 2;
any other exception is a bug in the library and keeps its traceback (exit 1).
"""


class UserError(ValueError):
  """Bad input from the user; the message is one sentence naming the value and what is valid."""
