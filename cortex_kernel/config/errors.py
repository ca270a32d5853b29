"""Configuration errors: one message naming the file, the key, the line and the expected form."""

from __future__ import annotations

from pathlib import Path


class ConfigError(Exception):
    """Raised for any configuration problem; the CLI prints it and exits with status 2.

    The message is built once, here, so every error class reads the same way:
    ``FILE:LINE: KEY: PROBLEM (expected FORM)``.
    """

    def __init__(
        self,
        problem: str,
        *,
        source: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
        expected: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = str(source) if source is not None else None
        self.key = key
        self.line = line
        self.expected = expected
        super().__init__(self.render())

    def render(self) -> str:
        where = self.source or "configuration"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        text += self.problem
        if self.expected:
            text += f" (expected {self.expected})"
        return text
