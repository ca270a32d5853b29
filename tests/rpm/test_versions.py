"""PEP 440 versions spelled for rpm sort the way PEP 440 sorts them, by rpm's own comparison."""

from __future__ import annotations

import itertools
import re
import shutil
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from tests.rpm.conftest import REPO_ROOT, RPM_DIR, build_driver, vercmp

rpm_version = build_driver().rpm_version


@pytest.mark.parametrize(
    ("pep440", "rpm"),
    [
        ("0.1.0", "0.1.0"),
        ("0.1.0a1", "0.1.0~a1"),
        ("0.1.0b2", "0.1.0~b2"),
        ("0.1.0rc1", "0.1.0~rc1"),
        ("0.1.0.dev3", "0.1.0~~dev3"),
        ("0.1.0a1.dev3", "0.1.0~a1~dev3"),
        ("0.1.0.post2", "0.1.0^post2"),
        ("0.1.0.post2.dev1", "0.1.0^post2~dev1"),
    ],
)
def test_mapping(pep440: str, rpm: str) -> None:
    assert rpm_version(pep440) == rpm


@pytest.mark.parametrize("bad", ["1!0.1.0", "0.1.0+local", "0.1.0-alpha", "v0.1.0", "0.1.0A1"])
def test_unpackageable_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        rpm_version(bad)


release = st.tuples(*(st.integers(0, 3),) * 3).map(lambda parts: ".".join(map(str, parts)))
pre = st.one_of(
    st.just(""),
    st.tuples(st.sampled_from(["a", "b", "rc"]), st.integers(0, 3)).map(lambda p: f"{p[0]}{p[1]}"),
)
post = st.one_of(st.just(""), st.integers(0, 2).map(lambda n: f".post{n}"))
dev = st.one_of(st.just(""), st.integers(0, 2).map(lambda n: f".dev{n}"))
pep440_versions = st.builds(lambda *parts: "".join(map(str, parts)), release, pre, post, dev)


@pytest.mark.skipif(shutil.which("rpm") is None, reason="needs rpm for its own version comparison")
@settings(max_examples=25, deadline=None)
@given(st.lists(pep440_versions, min_size=2, max_size=12, unique=True))
def test_rpm_orders_like_pep440(versions: list[str]) -> None:
    ordered = sorted(versions, key=Version)
    pairs = [rpm_version(v) for pair in itertools.pairwise(ordered) for v in pair]
    results = vercmp(*pairs)
    results = results if isinstance(results, list) else [results]
    assert results == [-1] * (len(ordered) - 1), list(itertools.pairwise(ordered))


def test_spec_defaults_follow_pyproject() -> None:
    """A version bump must touch the specs' defaults and changelog too; this test says so."""
    pep440 = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for spec in ("cortex-kernel.spec", "cortex-neuron.spec"):
        text = (RPM_DIR / spec).read_text()
        assert f"%{{!?pep440_version:%global pep440_version {pep440}}}" in text, spec
        assert f"%{{!?rpm_version:%global rpm_version {rpm_version(pep440)}}}" in text, spec
        changelog = text.split("%changelog\n", 1)[1].splitlines()[0]
        assert changelog.endswith(f" - {rpm_version(pep440)}-1"), spec
