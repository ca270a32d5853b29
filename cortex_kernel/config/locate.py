"""Find the line of a dotted key in a TOML file, for error messages.

``tomllib`` reports lines only for syntax errors; type and unknown-key errors come from msgspec
with a JSON path and no line. A light scan of the file's table headers and ``key =`` lines is
enough to point an operator at the right line, and it never fails: no match means no line.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"']+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def locate_line(text: str, key: str) -> int | None:
    """Return the 1-based line where ``key`` (``a.b``, ``a[1].b``) is set, or its table starts."""
    counters: dict[str, int] = {}
    table = ""
    header_line: dict[str, int] = {}
    inline: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        header = _HEADER.match(line)
        if header:
            name = header.group(2).replace('"', "").replace("'", "")
            if header.group(1) == "[[":
                index = counters.get(name, -1) + 1
                counters[name] = index
                table = f"{name}[{index}]"
            else:
                # ``[models.options]`` after ``[[models]]`` is the latest models entry's table.
                array = next((a for a in counters if name.startswith(a + ".")), None)
                table = f"{array}[{counters[array]}]{name[len(array) :]}" if array else name
            header_line.setdefault(table, number)
            continue
        match = _KEY.match(line)
        if match:
            name = match.group(1).replace('"', "").replace("'", "")
            full = f"{table}.{name}" if table else name
            if full == key:
                return number
            if inline is None and key.startswith(full + ".") and "{" in line:
                inline = number  # the key sits inside an inline table set on this line
    if inline is not None:
        return inline
    # Fall back to the nearest enclosing table that exists.
    parts = key
    while parts:
        if parts in header_line:
            return header_line[parts]
        cut = max(parts.rfind("."), parts.rfind("["))
        if cut <= 0:
            break
        parts = parts[:cut]
    return None
