"""Reading a ``/metrics`` exposition in tests: fetch, parse into series, compare, run promtool."""

from __future__ import annotations

import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.system_tools import tool_or_skip

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        body: bytes = response.read()  # urlopen's result is typed Any
        return body.decode()


def parse(text: str) -> Series:
    """Every sample of ``text``, keyed by sample name and its label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def families(text: str) -> dict[str, str]:
    """Family name to type, from the ``# TYPE`` lines (counters without their ``_total``)."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def value(series: Series, name: str, **labels: str) -> float:
    """The sum of every series named ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (sample, got), v in series.items() if sample == name and wanted <= got)


def delta(before: Series, after: Series, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def series_of(series: Series, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample, labels in series if sample == name]


def promtool_check(text: str, what: str) -> None:
    """``promtool check metrics`` on ``text``; skips when promtool is missing (CI installs it)."""
    promtool = tool_or_skip("promtool", "apt-get install prometheus; scripts/install-system-deps")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"promtool rejected the {what} exposition:\n{result.stdout}{result.stderr}"
