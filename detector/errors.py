"""The one exception hierarchy of mailstorm.

Every error a user can cause derives from ``MailstormError``; its message is one line and
the CLI prints it as ``Error: <message>`` without a traceback. Anything else escaping is a
bug and keeps its traceback.
"""

from __future__ import annotations


class MailstormError(Exception):
    """Base of all user-facing errors; ``str()`` is the one-line message."""


class _LocatedError(MailstormError):
    """An error at a place in a file, shown as ``path:line: message``.

    ``line`` is 1-based; it is None only when the problem is the file or folder as a
    whole (e.g. an empty rules folder), and then ``str()`` is ``path: message``.
    """

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str]]:
        # Exception's default pickling replays args (the formatted text) into __init__.
        return (type(self), (self.path, self.line, self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {self.line!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        # Equal errors compare equal so tests and de-duplication can use plain ==.
        if type(other) is not type(self):
            return NotImplemented
        return (self.path, self.line, self.message) == (other.path, other.line, other.message)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.path, self.line, self.message))


class RuleError(_LocatedError):
    """A rule file is malformed or inconsistent."""


class InputError(_LocatedError):
    """A log file cannot be read or parsed."""


class DamagedInputError(InputError):
    """A file that could not be read to its end (a truncated or corrupt compressed stream,
    an I/O error) after some of it was: the lines before the damage are good. ``line`` is
    the first line not read (1-based)."""


class UsageError(MailstormError):
    """The command line is wrong (bad option value, unknown --set key...)."""


class UnreadableInputsError(MailstormError):
    """Some inputs cannot be read (no known format, truncated...), found before any loads.

    ``unreadable`` lists (path, short reason); ``total`` is how many inputs there were.
    """

    def __init__(self, unreadable: list[tuple[str, str]], total: int) -> None:
        self.unreadable = list(unreadable)
        self.total = total
        listed = ", ".join(f"{path} ({why})" for path, why in self.unreadable)
        super().__init__(f"cannot read {len(self.unreadable)} of {total} inputs: {listed}; "
                         "nothing was loaded; use --skip-unknown to load the rest")

    def __reduce__(self) -> tuple[type, tuple[list[tuple[str, str]], int]]:
        return (type(self), (self.unreadable, self.total))
