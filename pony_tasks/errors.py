"""Which failures retrying cannot fix, and the exit codes that tell a scheduler so.

A *permanent* failure (a bad parameter or setting, a schema older than the code, a blocking data-quality failure, a
site that is blocking us, a refused promotion) fails the same way on every retry — and retrying some of them makes
things worse (a blocked site). ``pony`` exits with :data:`EXIT_PERMANENT` for them and :data:`EXIT_USAGE` for bad
command-line arguments; Airflow tasks turn both into an immediate failure without retries
(``pony_airflow.failures``). Everything else (network, a database that went away) exits 1 and may be retried.
"""

from __future__ import annotations

EXIT_TRANSIENT = 1
EXIT_USAGE = 2  # click's usage errors, configuration errors
EXIT_PERMANENT = 3
PERMANENT_EXIT_CODES = frozenset({EXIT_USAGE, EXIT_PERMANENT})


class PermanentError(Exception):
    """Mixin: an error that will not change by retrying (the fix is a person's: a setting, data, a command)."""


# Errors from libraries we call that are permanent by nature, by class name so nothing heavy is imported here:
# psycopg2's SQL errors (not OperationalError: a connection that dropped is transient).
_PERMANENT_NAMES = frozenset({"ProgrammingError", "DataError", "IntegrityError", "NotSupportedError",
                              "ParamValidationError", "ValidationError", "UndefinedError"})  # fmt: skip


def is_permanent(exc: BaseException) -> bool:
    """True when retrying ``exc`` cannot succeed: our :class:`PermanentError`, a ``ValueError``/``LookupError``/
    ``TypeError`` (bad input or a bug: the same input fails the same way), or a known permanent library error."""
    if isinstance(exc, PermanentError | ValueError | LookupError | TypeError):
        return True
    return any(cls.__name__ in _PERMANENT_NAMES for cls in type(exc).__mro__)
