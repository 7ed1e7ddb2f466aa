"""The error hierarchy of Rillet: one root, one family per concern.

Every message names the offending value and where it came from, so a user can fix it
without reading code. HTTP status mapping lives in `serving/errors.py`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass


class RilletError(Exception):
    """Root of every error Rillet raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a definition file, located at `path:line:column` (1-based)."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class DefinitionError(RilletError):
    """A definitions directory is invalid; `problems` lists every problem found, in order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class DurationError(RilletError):
    """A duration string is not `<int><unit>` with unit s, m, h or d."""


class ValidationError(RilletError):
    """Events failed their source schema; raised by all-or-nothing entry points."""

    def __init__(self, message: str, details: list[dict[str, object]] | None = None) -> None:
        self.details = details or []
        super().__init__(message)


class RegistryError(RilletError):
    """The applied registry is missing, unreadable, or a change to it was refused."""


class BreakingChangeError(RegistryError):
    """`apply` was asked to make a breaking change without `--allow-breaking`."""

    def __init__(self, changes: list[str]) -> None:
        self.changes = changes
        super().__init__(
            "refusing breaking changes (rename the view or pass --allow-breaking):\n  "
            + "\n  ".join(changes)
        )


class UnknownNameError(RilletError):
    """A reference (view, feature, source, entity) names nothing in the registry."""


class StorageError(RilletError):
    """Redis or the offline store could not be reached or returned unexpected data."""


class AuthError(RilletError):
    """A request lacked a valid API key (401) or its key lacks the scope (403)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        self.forbidden = forbidden
        super().__init__(message)
