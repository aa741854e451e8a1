"""User-facing errors.

A `UserError` is a mistake in the user's input (a study file, a name, a path). The CLI prints its
message on one line and exits with status 2, without a traceback; library callers catch it like any
`ValueError`.
"""

import difflib
from collections.abc import Iterable


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


class EnvironmentFault(UserError):
    """The machine, not the input: a full disk, a read-only file system, a path we may not write.

    One line naming the path and the fix; the CLI exits with status 2 (it is a `UserError`). Whatever
    was being written is removed (no temporary file is left) and finished runs are kept, so running the
    same command again after the fix resumes the study."""


# errno -> (what happened, the fix's verb phrase; {where} is the directory to act on)
_ENV_ERRNOS = {
    "ENOSPC": ("no space left on the device", "free space on the file system of {where}"),
    "EDQUOT": ("disk quota exceeded", "free space (or raise the quota) on the file system of {where}"),
    "EROFS": ("the file system is read-only", "make {where} writable (remount it read-write)"),
    "EACCES": ("permission denied", "make {where} writable"),
    "EPERM": ("operation not permitted", "make {where} writable"),
}


def environment_fault(error: BaseException, path, doing: str = "write") -> "EnvironmentFault | None":
    """An `EnvironmentFault` for `error` if it is a full disk, a read-only file system or a permission
    problem (an `OSError` with that errno, or torch's `RuntimeError` from a failed stream write), else
    None. `path` is the file being written; the message names it and the fix."""
    import errno as errno_mod
    from pathlib import Path

    path = Path(path)
    where = path.parent
    code = getattr(error, "errno", None)
    name = errno_mod.errorcode.get(code) if isinstance(code, int) else None
    if name in _ENV_ERRNOS:
        what, fix = _ENV_ERRNOS[name]
    elif isinstance(error, RuntimeError) and any(s in str(error) for s in (
            "basic_ios::clear", "file write failed", "PytorchStreamWriter failed", "unexpected pos")):
        # torch.save reports a failed write without errno (C++ stream); a full disk is the usual cause
        what, fix = "the write failed (disk full?)", "free space on the file system of {where} or make it writable"
    else:
        return None
    return fault(path, what, fix.format(where=where), doing)


def fault(path, what: str, fix: str, doing: str = "write") -> EnvironmentFault:
    """`cannot write PATH: WHAT; FIX, then run the same command again (finished runs are kept)`."""
    return EnvironmentFault(f"cannot {doing} {path}: {what}; {fix}, then run the same command again "
                            "(finished runs are kept)")
