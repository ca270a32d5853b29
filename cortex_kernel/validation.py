"""Where a msgspec validation error is: one reading of its message for every caller.

msgspec reports a failed conversion as text, ``"Expected `int`, got `str` - at `$.a[0].b`"``,
and names a missing or unknown field inside the problem rather than in the path. Request
bodies, configuration files and manifests all need the dotted key of the culprit, so they read
it here instead of each parsing the message its own way.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

_NAMED_FIELD = ("Object missing required field `", "Object contains unknown field `")


class ErrorLocation(NamedTuple):
    """``problem`` as msgspec worded it; ``path`` the dotted container (``a[0]``, ``""`` at the
    root); ``field`` the field a missing/unknown-field error names, else ``None``."""

    problem: str
    path: str
    field: str | None

    @property
    def key(self) -> str:
        """The dotted key of the culprit: ``path`` plus ``field`` (``""`` for the root)."""
        if self.field is None:
            return self.path
        return f"{self.path}.{self.field}" if self.path else self.field

    @property
    def unknown_field(self) -> bool:
        return self.problem.startswith(_NAMED_FIELD[1])

    @property
    def missing_field(self) -> bool:
        return self.problem.startswith(_NAMED_FIELD[0])


def error_location(exc: msgspec.ValidationError) -> ErrorLocation:
    """Split ``exc`` into problem, container path and named field."""
    problem, _, where = str(exc).partition(" - at `")
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    field = problem.split("`")[1] if problem.startswith(_NAMED_FIELD) else None
    return ErrorLocation(problem, path, field)
