"""User-facing errors.

A `UserError` is a mistake in the user's input (a study file, a name, a path). The CLI prints its
message on one line and exits with status 2, without a traceback; library callers catch it like any
`ValueError`.
"""

import difflib
from typing import Iterable


class UserError(ValueError):
    """Bad input from the user. The message names the problem and the fix, on one line."""


class UnknownNameError(UserError, KeyError):
    """A registry name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`"did you mean 'adam'? "` for the closest of `choices` (difflib), or `""` when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""
