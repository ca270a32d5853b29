"""Plugin-owned configuration tables: declared by a plugin, checked like the kernel's own.

A third-party plugin installed by entry point (a dist-info, as pip would leave it) declares
``[acme]`` in ``cortex.toml`` and ``neuron.toml``; the built-in plugins declare ``[console]``,
``[responses]``, ``[routing.affinity]`` and ``[routing.kv_aware]``. Every error names file, line
and key, a table no plugin claims is refused, and ``config show`` lists the tables.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import Result

from cortex_kernel import ConfigTable, hookimpl
from cortex_kernel.config.loader import LoadedConfig, load_config
from cortex_kernel.config.plugin_tables import check_plugin_tables, declared_tables
from cortex_kernel.config.schema import CortexConfig
from cortex_kernel.plugins import PluginError, build_plugin_manager
from tests.kernel.cli_errors import cli_error, write_config

ACME_MODULE = '''
"""A third-party plugin that owns the [acme] table of cortex.toml and of neuron.toml."""
from typing import Annotated

import msgspec

from cortex_kernel import ConfigTable, hookimpl


class AcmeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    retries: Annotated[int, msgspec.Meta(ge=0)] = 3
    api_token: str | None = None
    mode: str = "fast"


class AcmeNodeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    spool_mb: int = 64


ACME = ConfigTable("acme", AcmeSettings)
ACME_NODE = ConfigTable("acme", AcmeNodeSettings, kind="neuron")


@hookimpl
def register_config_tables():
    return [ACME, ACME_NODE]
'''


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The ``acme`` plugin, installed as a distribution with one ``cortex_kernel`` entry point."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "cortex_acme.py").write_text(textwrap.dedent(ACME_MODULE))
    dist = root / "cortex_acme-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cortex-acme\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cortex_kernel]\nacme = cortex_acme\n")
    (dist / "RECORD").write_text("")
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("cortex_acme", None)


def test_hook_register_config_tables(acme: Path) -> None:
    tables = declared_tables(build_plugin_manager(environ={}))
    names = {(table.kind, table.name) for table in tables}
    assert {("cortex", "acme"), ("neuron", "acme")} <= names
    assert {("cortex", "console"), ("cortex", "responses"), ("cortex", "routing.affinity")} <= names


def test_a_bad_value_in_a_plugin_table_names_file_line_and_key(
    run_cli: Callable[..., Result], acme: Path, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml",
        """
        [gateway]
        listen = "127.0.0.1:9000"

        [acme]
        mode = "slow"
        retries = -1
        """,
    )
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:6: acme.retries: must be `int` >= 0 (expected an integer >= 0)" in error


def test_an_unknown_key_in_a_plugin_table_names_file_line_and_the_known_keys(
    run_cli: Callable[..., Result], acme: Path, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "cortex.toml", "[acme]\nretries = 1\nretires = 2\n")
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:3: acme.retires: unknown key (expected one of retries, api_token, mode)" in error


def test_a_built_in_plugin_sub_table_is_checked_where_it_sits(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml",
        """
        [routing]
        strategy = "kv_aware"

        [routing.kv_aware]
        kv_full_ratio = 1.5
        """,
    )
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:5: routing.kv_aware.kv_full_ratio: must be `float` <= 1" in error


def test_a_table_no_plugin_claims_is_an_error_naming_file_and_line(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml", '[gateway]\nlisten = "127.0.0.1:9000"\n\n[respones]\nstore_ttl_s = 5\n'
    )
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:4: respones: unknown table: no loaded plugin declares it" in error
    assert "responses" in error  # the tables that do exist are listed


def test_an_unclaimed_sub_table_of_a_kernel_table_is_an_error(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(tmp_path / "cortex.toml", "[routing.afinity]\nload_epsilon = 0.5\n")
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:1: routing.afinity: unknown table" in error


def test_a_moved_router_key_left_in_routing_is_an_unknown_key(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(tmp_path / "cortex.toml", '[routing]\nstrategy = "affinity"\nload_epsilon = 0.5\n')
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:3: routing.load_epsilon: unknown key" in error


@pytest.mark.parametrize("command", ["serve", "neuron"])
def test_daemons_refuse_an_unclaimed_table_before_starting(
    run_cli: Callable[..., Result], tmp_path: Path, command: str
) -> None:
    name = "cortex.toml" if command == "serve" else "neuron.toml"
    path = write_config(
        tmp_path / name,
        '[consle]\ncapture = true\n\n[[neurons]]\nname = "a"\nendpoint = "http://127.0.0.1:9"\n',
    )
    if command == "neuron":
        path = write_config(tmp_path / name, 'listen = "127.0.0.1:0"\n\n[consle]\ncapture = true\n')
    error = cli_error(run_cli, command, "--config", str(path))
    line = 3 if command == "neuron" else 1
    assert f"{path}:{line}: consle: unknown table" in error


def test_a_neuron_plugin_table_is_checked_in_neuron_toml(
    run_cli: Callable[..., Result], acme: Path, tmp_path: Path
) -> None:
    good = write_config(tmp_path / "neuron.toml", "[acme]\nspool_mb = 128\n")
    assert run_cli("config", "check", str(good)).exit_code == 0
    bad = write_config(tmp_path / "neuron-bad.toml", '[acme]\nmode = "fast"\n')  # a cortex.toml key
    error = cli_error(run_cli, "config", "check", str(bad))
    assert f"{bad}:2: acme.mode: unknown key (expected one of spool_mb)" in error


def test_the_table_of_a_blocked_plugin_is_a_warning_not_an_error(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml", '[plugins]\nblock = ["console"]\n\n[console]\ncapture = true\n'
    )
    result = run_cli("config", "check", str(path))
    assert result.exit_code == 0, result.output
    assert "warning: [console] belongs to blocked plugin 'console'" in result.output


def test_blocking_a_plugin_does_not_excuse_a_misspelt_table(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml", '[plugins]\nblock = ["console"]\n\n[consle]\ncapture = true\n'
    )
    error = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:4: consle: unknown table" in error


def test_config_show_lists_plugin_tables_with_sources_and_secrets_redacted(
    run_cli: Callable[..., Result], acme: Path, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml", '[acme]\napi_token = "s3cret"\n\n[routing.affinity]\nmax_sessions = 9\n'
    )
    result = run_cli("config", "show", "--json", "--config", str(path))
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)["values"]
    assert values["acme.api_token"] == {"value": "<redacted>", "source": f"file {path}:2"}
    assert values["acme.retries"] == {"value": 3, "source": "default"}
    assert values["routing.affinity.max_sessions"] == {"value": 9, "source": f"file {path}:5"}
    assert values["console.capture"] == {"value": False, "source": "default"}
    assert "s3cret" not in result.output


def test_environment_and_set_reach_plugin_tables(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    env = {"CORTEX_CONSOLE__CAPTURE_CHARS": "20", "CORTEX_ROUTING__KV_AWARE__KV_FULL_RATIO": "0.5"}
    result = run_cli("config", "show", "--json", "--set", "responses.store_ttl_s=9", env=env)
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)["values"]
    assert values["console.capture_chars"] == {"value": 20, "source": "env CORTEX_CONSOLE__CAPTURE_CHARS"}
    assert values["routing.kv_aware.kv_full_ratio"]["value"] == 0.5
    assert values["responses.store_ttl_s"] == {"value": 9.0, "source": "cli"}


def test_a_bad_plugin_value_from_the_environment_names_the_variable(run_cli: Callable[..., Result]) -> None:
    error = cli_error(run_cli, "config", "show", env={"CORTEX_CONSOLE__CAPTURE_CHARS": "0"})
    assert "env CORTEX_CONSOLE__CAPTURE_CHARS: console.capture_chars: must be" in error


def test_an_unclaimed_table_from_the_environment_only_warns(run_cli: Callable[..., Result]) -> None:
    """Unrelated ``CORTEX_*`` variables were always left alone; one that looks like a table the
    plugins do not declare is now pointed out, but does not stop the daemon."""
    result = run_cli("config", "show", env={"CORTEX_SOMETHING__ELSE": "1"})
    assert result.exit_code == 0, result.output
    assert "CORTEX_SOMETHING__ELSE: no loaded plugin declares the table [something]" in result.output


def test_a_set_flag_for_an_unclaimed_table_is_an_error(run_cli: Callable[..., Result]) -> None:
    error = cli_error(run_cli, "config", "show", "--set", "consle.capture=true")
    assert "cli: consle: unknown table" in error


def test_a_plugin_reads_its_table_typed_with_defaults(tmp_path: Path) -> None:
    class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
        level: int = 1
        name: str = "x"

    table = ConfigTable("mine", Settings)
    path = write_config(tmp_path / "cortex.toml", "[mine]\nlevel = 5\n")
    loaded = load_config("cortex", path, environ={}, search=False)
    assert loaded.tables == {"mine": {"level": 5}}
    value = loaded.table(table)
    assert isinstance(value, Settings) and (value.level, value.name) == (5, "x")
    assert LoadedConfig("cortex", CortexConfig(), None, {}).table(table) == Settings()


class _Loose(msgspec.Struct):
    level: int = 1


class _Strict(msgspec.Struct, forbid_unknown_fields=True):
    level: int = 1


class _Required(msgspec.Struct, forbid_unknown_fields=True):
    level: int


@pytest.mark.parametrize(
    ("name", "schema", "error"),
    [
        ("mine", _Loose, "forbid_unknown_fields"),
        ("mine", _Required, "needs a default"),
        ("Mine", _Strict, "dotted lowercase"),
        ("mine", dict, "msgspec.Struct"),
    ],
)
def test_a_malformed_declaration_is_refused(name: str, schema: type[Any], error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        ConfigTable(name, schema)


class _Declares:
    def __init__(self, *tables: ConfigTable[msgspec.Struct]) -> None:
        self.tables = list(tables)

    @hookimpl
    def register_config_tables(self) -> list[ConfigTable[msgspec.Struct]]:
        return self.tables


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["console"], "two plugins declare"),  # the console plugin's own
        (["gateway"], "key of the kernel's own configuration"),
        (["routing.strategy"], "key of the kernel's own configuration"),
        (["gateway.listen.x"], "is a kernel key, not a table"),
        (["mine", "mine.sub"], r"lies inside plugin table \[mine\]"),
    ],
)
def test_conflicting_declarations_are_start_up_errors(names: list[str], error: str) -> None:
    plugin = _Declares(*(ConfigTable(name, _Strict) for name in names))
    pm = build_plugin_manager(extra=[("declares", plugin)], environ={})
    with pytest.raises(PluginError, match=error):
        declared_tables(pm)


def test_a_claimed_table_is_validated_by_the_check(tmp_path: Path) -> None:
    plugin = _Declares(ConfigTable("mine", _Strict))
    pm = build_plugin_manager(load_entrypoints=False, extra=[("declares", plugin)])
    path = write_config(tmp_path / "cortex.toml", '[mine]\nlevel = "high"\n')
    loaded = load_config("cortex", path, environ={}, search=False)
    with pytest.raises(Exception, match=rf"{path}:2: mine.level: wrong type \(got `str`\)"):
        check_plugin_tables(loaded, pm)


def test_reading_a_table_of_the_other_file_is_a_plugin_bug() -> None:
    table = ConfigTable("mine", _Strict, kind="neuron")
    with pytest.raises(ValueError, match=r"\[mine\] is a neuron.toml table"):
        LoadedConfig("cortex", CortexConfig(), None, {}).table(table)


def test_a_table_is_converted_once_from_the_check_to_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's check and the plugin's read (also through the copy embedded mode makes) share one
    conversion; a copy with other raw tables converts its own."""
    from cortex_kernel.config import loader

    spec = ConfigTable("mine", _Strict)
    pm = build_plugin_manager(load_entrypoints=False, extra=[("declares", _Declares(spec))])
    loaded = load_config(
        "cortex", write_config(tmp_path / "cortex.toml", "[mine]\nlevel = 5\n"), environ={}, search=False
    )
    converted: list[object] = []

    def counting(schema: type[msgspec.Struct], *args: Any, **kwargs: Any) -> object:
        converted.append(schema)
        return real(schema, *args, **kwargs)

    real = loader.convert_located
    monkeypatch.setattr(loader, "convert_located", counting)
    check_plugin_tables(loaded, pm)
    value = loaded.table(spec)
    assert value == _Strict(level=5) and loaded.table(spec) is value
    assert dataclasses.replace(loaded, sources={}).table(spec) is value
    other = dataclasses.replace(loaded, tables={"mine": {"level": 7}})
    assert other.table(spec) == _Strict(level=7)
    assert converted == [_Strict, _Strict]
