"""The source rule shared by the neuron and every harness (``cortex_kernel.sources``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cortex_kernel.errors import BadRequest, Forbidden, NotFound
from cortex_kernel.sources import locate_source


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "org" / "model").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    return tmp_path / "root"


@pytest.mark.parametrize(
    "source",
    [
        "/etc",
        "..",
        "../outside",
        "org/../../outside",
        "link",
        "link/",
        "file:///etc",
        "FILE:/etc",
        "https://example.com/org/model",
        "synthetic:../..",
        "synthetic:/etc",
        "synthetic:a/b",
        "~/anything",
        "~no-such-user-here/x",
        "org\\model",
    ],
)
def test_escapes_are_source_not_allowed(root: Path, source: str) -> None:
    with pytest.raises(Forbidden) as caught:
        locate_source(source, roots=[root])
    assert (caught.value.status, caught.value.code) == (403, "source_not_allowed")


@pytest.mark.parametrize("source", ["", "  ", "org/\x00model", "a\nb", "\x7f"])
def test_malformed_sources_are_invalid(root: Path, source: str) -> None:
    with pytest.raises(BadRequest) as caught:
        locate_source(source, roots=[root])
    assert (caught.value.status, caught.value.code) == (400, "invalid_source")


def test_inside_a_root(root: Path) -> None:
    assert locate_source("org/model", roots=[root]).path == (root / "org" / "model").resolve()
    assert locate_source(str(root / "org" / "model"), roots=[root]).path == (root / "org" / "model").resolve()
    assert locate_source("org/../org/model", roots=[root]).path == (root / "org" / "model").resolve()
    assert locate_source("synthetic:tiny-chat", roots=[root]).synthetic == "tiny-chat"
    with pytest.raises(NotFound):
        locate_source(str(root / "missing"), roots=[root])
    with pytest.raises(NotFound):
        locate_source("./missing", roots=[root])


def test_a_hub_id_is_never_a_path_in_the_working_directory(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd" / "evil" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    located = locate_source("evil/model", roots=[root])
    assert (located.path, located.hub_id) == (None, "evil/model")
    assert locate_source("gpt2", roots=[root]).hub_id == "gpt2"
