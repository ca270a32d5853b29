"""Bad configuration exits with status 2 and one message naming file, key, line and form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.kernel.cli_errors import cli_error, write_config

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_key(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "cortex.toml", '[gateway]\nlisten = "0.0.0.0:31313"\nlistn = "x"\n')
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:3: gateway.listn: unknown key" in line
    assert "metrics_listen" in line  # the expected form lists the valid keys


def test_wrong_type(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "cortex.toml", "[gateway]\nlisten = 31313\n")
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:2: gateway.listen: wrong type (got `int`) (expected a string)" in line


def test_unparseable_listen_address(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "cortex.toml", '[gateway]\nmetrics_listen = "localhost"\n')
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:2: gateway.metrics_listen: cannot parse listen address 'localhost'" in line
    assert "expected HOST:PORT" in line


def test_out_of_range_port(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "neuron.toml", 'listen = "0.0.0.0:70000"\n')
    assert "listen: port 70000 is out of range" in cli_error(run_cli, "config", "check", str(path))


def test_duplicate_neuron_name(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "cortex.toml",
        """
        [[neurons]]
        name = "beast"
        endpoint = "http://beast.internal:13131"

        [[neurons]]
        name = "beast"
        endpoint = "http://benjy.internal:13131"
        """,
    )
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:6: neurons[1].name: duplicate neuron name 'beast' (expected unique names)" in line


def test_model_pinned_to_unknown_neuron(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "etc" / "cortex.toml", '[[neurons]]\nname = "beast"\nendpoint = "http://b:13131"\n'
    )
    models = write_config(
        tmp_path / "etc" / "models.toml",
        '[[models]]\nid = "m"\nharness = "vllm"\n\n'
        '[[models]]\nid = "n"\nharness = "vllm"\npinned_on = ["nope"]\n',
    )
    line = cli_error(run_cli, "config", "check", str(config))
    assert f"{models}:8: models[1].pinned_on: model 'n' is pinned to unknown neuron 'nope'" in line
    assert "beast" in line


def test_invalid_toml_syntax(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "cortex.toml", "[gateway]\nlisten = \n")
    assert f"{path}:2: invalid TOML" in cli_error(run_cli, "config", "check", str(path))


def test_unknown_eviction_strategy_lists_the_evictors_installed(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "cortex.toml",
        '[eviction]\nstrategy = "random"\n\n[[neurons]]\nname = "a"\nendpoint = "http://127.0.0.1:9"\n',
    )
    line = cli_error(run_cli, "serve", "--config", str(path))
    assert f"{path}:2: eviction.strategy: unknown eviction strategy 'random'" in line
    assert "'lru', 'priority'" in line


def test_unknown_key_from_environment_names_the_variable(run_cli: Callable[..., Result]) -> None:
    assert "env CORTEX_GATEWAY__LISTN: gateway.listn: unknown key" in cli_error(
        run_cli, "config", "show", env={"CORTEX_GATEWAY__LISTN": "0.0.0.0:1"}
    )


@pytest.mark.parametrize(
    ("how", "origin"),
    [("env", "env CORTEX_GATEWAY__WORKERS"), ("set", "cli"), ("file", "cortex.toml:2")],
)
def test_workers_without_neurons_names_where_the_worker_count_was_set(
    run_cli: Callable[..., Result], tmp_path: Path, how: str, origin: str
) -> None:
    """The check ``serve`` makes once the file is loaded points where the loader's own errors do."""
    path = write_config(tmp_path / "cortex.toml", "[gateway]\nworkers = 2\n" if how == "file" else "")
    args = ["serve", "--config", str(path), *(["--set", "gateway.workers=2"] if how == "set" else [])]
    line = cli_error(run_cli, *args, env={"CORTEX_GATEWAY__WORKERS": "2"} if how == "env" else None)
    assert f"{origin}: gateway.workers: 2 workers need [[neurons]]" in line


def test_missing_explicit_file(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    assert "absent.toml: file not found" in cli_error(
        run_cli, "config", "show", "--config", str(tmp_path / "absent.toml")
    )


@pytest.mark.parametrize("command", ["serve", "neuron"])
def test_daemons_refuse_bad_configuration_before_starting(
    run_cli: Callable[..., Result], tmp_path: Path, command: str
) -> None:
    name = "cortex.toml" if command == "serve" else "neuron.toml"
    key = "[gateway]\nlisten" if command == "serve" else "listen"
    path = write_config(tmp_path / name, f'{key} = "not-an-address"\n')
    assert "cannot parse listen address" in cli_error(run_cli, command, "--config", str(path))


@pytest.mark.parametrize("name", ["cortex.example.toml", "neuron.example.toml", "models.example.toml"])
def test_shipped_example_files_parse(run_cli: Callable[..., Result], name: str) -> None:
    result = run_cli("config", "check", str(ROOT / name))
    assert result.exit_code == 0, result.output
    assert result.output.endswith("ok" + result.output.split("ok", 1)[1])


def test_alias_to_unknown_model(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "models.toml", '[[models]]\nid = "m"\nharness = "x"\n\n[aliases]\nfast = "zzz"\n'
    )
    assert f"{path}:6: aliases.fast: alias 'fast' points to unknown model 'zzz'" in cli_error(
        run_cli, "config", "check", str(path)
    )


@pytest.mark.parametrize(
    ("extra", "line", "key", "problem"),
    [
        ("idle_ttl_s = 0\n", 4, "models[0].idle_ttl_s", "> 0"),
        (
            "idle_ttl_s = 60\nunload_ttl_s = 30\n",
            5,
            "models[0].unload_ttl_s",
            "must be longer than idle_ttl_s",
        ),
        ("max_replicas = 0\n", 4, "models[0].max_replicas", ">= 1"),
        ("min_replicas = 3\nmax_replicas = 2\n", 4, "models[0].min_replicas", "exceeds max_replicas"),
        ("min_replicas = -1\n", 4, "models[0].min_replicas", ">= 0"),
    ],
)
def test_residency_keys_out_of_range(
    run_cli: Callable[..., Result], tmp_path: Path, extra: str, line: int, key: str, problem: str
) -> None:
    path = write_config(tmp_path / "models.toml", f'[[models]]\nid = "m"\nharness = "x"\n{extra}')
    message = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:{line}: {key}:" in message and problem in message, message


def test_residency_default_ttls_out_of_order(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(tmp_path / "cortex.toml", "[residency]\nidle_ttl_s = 60\nunload_ttl_s = 10\n")
    line = cli_error(run_cli, "config", "check", str(path))
    assert f"{path}:3: residency.unload_ttl_s: unload_ttl_s must be longer" in line


def test_alias_list_naming_an_unknown_model(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "models.toml",
        '[[models]]\nid = "big"\nharness = "x"\n\n[aliases]\ncoder = ["big", "nope"]\n',
    )
    assert f"{path}:6: aliases.coder: alias 'coder' points to unknown model 'nope'" in cli_error(
        run_cli, "config", "check", str(path)
    )
