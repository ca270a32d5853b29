"""Folding an OpenAI stream's tool-call fragments into calls, for every dialect that translates one.

A chat stream sends each tool call in pieces: the id and the name once (in the first fragment, or
a later one for some servers), the arguments as text in any number of fragments. The Anthropic
and Responses translators both keep what each call has said so far here, and differ only in the
events they make of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cortex_anthropic.chat_protocol import ToolCallFragment


@dataclass
class ToolCallParts:
    """What the fragments of one upstream tool call have said so far."""

    id: str | None = None
    name: str | None = None
    pending: list[str] = field(default_factory=list)  # argument text from before the call could open

    def absorb(self, fragment: ToolCallFragment) -> str:
        """Take the id and the name from ``fragment`` (the first of each wins); its argument text."""
        if fragment.id:
            self.id = self.id or fragment.id
        function = fragment.function
        if function is not None and function.name:
            self.name = self.name or function.name
        return function.arguments if function is not None and function.arguments else ""

    def hold(self, arguments: str) -> bool:
        """Before the call's block or item is open: keep ``arguments`` to send once it is; whether
        it can open now (a call opens once its name is known)."""
        if arguments:
            self.pending.append(arguments)
        return self.name is not None
