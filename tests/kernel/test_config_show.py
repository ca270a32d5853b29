"""``config show`` reports the effective value and its source at each precedence level."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result


def _values(result: Result) -> dict[str, dict[str, object]]:
    assert result.exit_code == 0, result.output
    values: dict[str, dict[str, object]] = json.loads(result.output)["values"]
    return values


def test_default_level(run_cli: Callable[..., Result]) -> None:
    values = _values(run_cli("config", "show", "--json"))
    assert values["gateway.listen"] == {"value": "127.0.0.1:31313", "source": "default"}
    assert values["eviction.strategy"] == {"value": "lru", "source": "default"}


def test_file_level(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "cortex.toml"
    path.write_text('[gateway]\nlisten = "0.0.0.0:31313"\n\n[eviction]\ndefrag_after_cycles = 50\n')
    values = _values(run_cli("config", "show", "--json", "--config", str(path)))
    assert values["gateway.listen"] == {"value": "0.0.0.0:31313", "source": f"file {path}:2"}
    assert values["eviction.defrag_after_cycles"]["source"] == f"file {path}:5"
    assert values["gateway.metrics_listen"]["source"] == "default"


def test_environment_level_beats_file(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    path = tmp_path / "cortex.toml"
    path.write_text('[gateway]\nlisten = "0.0.0.0:31313"\n')
    env = {"CORTEX_GATEWAY__LISTEN": "10.1.2.3:4000", "CORTEX_EVICTION__DEFRAG_AFTER_CYCLES": "7"}
    values = _values(run_cli("config", "show", "--json", "--config", str(path), env=env))
    assert values["gateway.listen"] == {"value": "10.1.2.3:4000", "source": "env CORTEX_GATEWAY__LISTEN"}
    assert values["eviction.defrag_after_cycles"] == {
        "value": 7,
        "source": "env CORTEX_EVICTION__DEFRAG_AFTER_CYCLES",
    }


def test_cli_level_beats_environment(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    env = {"CORTEX_GATEWAY__LISTEN": "10.1.2.3:4000"}
    result = run_cli("config", "show", "--json", "--set", "gateway.listen=[::1]:5000", env=env)
    values = _values(result)
    assert values["gateway.listen"] == {"value": "[::1]:5000", "source": "cli"}


def test_neuron_file_uses_its_own_prefix(run_cli: Callable[..., Result]) -> None:
    values = _values(
        run_cli("config", "show", "--kind", "neuron", "--json", env={"NEURON_LISTEN": "0.0.0.0:9"})
    )
    assert values["listen"] == {"value": "0.0.0.0:9", "source": "env NEURON_LISTEN"}


def test_text_output_names_sources(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    result = run_cli("config", "show", env={"CORTEX_EVICTION__STRATEGY": "priority"})
    assert result.exit_code == 0
    assert 'eviction.strategy = "priority"  # env CORTEX_EVICTION__STRATEGY' in result.output
    assert "# file: none found" in result.output


def test_search_order_user_then_site_then_system(
    run_cli: Callable[..., Result], clean_env: dict[str, str]
) -> None:
    user = Path(clean_env["XDG_CONFIG_HOME"]) / "cortex" / "cortex.toml"
    site = Path(clean_env["XDG_CONFIG_DIRS"]) / "cortex" / "cortex.toml"
    site.parent.mkdir(parents=True)
    site.write_text('[gateway]\nlisten = "0.0.0.0:2"\n')
    assert json.loads(run_cli("config", "show", "--json").output)["file"] == str(site)
    user.parent.mkdir(parents=True)
    user.write_text('[gateway]\nlisten = "0.0.0.0:1"\n')
    shown = json.loads(run_cli("config", "show", "--json").output)
    assert shown["file"] == str(user)
    assert shown["values"]["gateway.listen"]["value"] == "0.0.0.0:1"


def test_models_file_is_found_beside_the_config_not_the_cwd(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "cortex.toml").write_text("[gateway]\n")
    (etc / "models.toml").write_text('[[models]]\nid = "m"\nharness = "transformers"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "models.toml").write_text("this is not toml")
    monkeypatch.chdir(elsewhere)
    shown = json.loads(run_cli("config", "show", "--json", "--config", str(etc / "cortex.toml")).output)
    assert shown["models_file"] == str(etc / "models.toml")


def test_relative_models_config_resolves_against_the_config_dir(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    (etc / "catalogues").mkdir(parents=True)
    (etc / "cortex.toml").write_text('models_config = "catalogues/fleet.toml"\n')
    (etc / "catalogues" / "fleet.toml").write_text('[[models]]\nid = "m"\nharness = "x"\n')
    monkeypatch.chdir(tmp_path)
    shown = json.loads(run_cli("config", "show", "--json", "--config", str(etc / "cortex.toml")).output)
    assert shown["models_file"] == str(etc / "catalogues" / "fleet.toml")


def test_secrets_are_redacted(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    gateway = tmp_path / "cortex.toml"
    gateway.write_text('[gateway]\nneuron_token = "gw-s3cret"\n[auth]\nrequire_api_key = true\n')
    neuron = tmp_path / "neuron.toml"
    neuron.write_text('token = "n-s3cret"\n[harnesses.x]\nhf_token = "hf-s3cret"\ndefault_max_tokens = 7\n')
    for args in (("--config", str(gateway)), ("--kind", "neuron", "--config", str(neuron))):
        for form in ((), ("--json",)):
            result = run_cli("config", "show", *form, *args)
            assert result.exit_code == 0, result.output
            assert "s3cret" not in result.output
            assert "<redacted>" in result.output
    values = _values(run_cli("config", "show", "--json", "--kind", "neuron", "--config", str(neuron)))
    assert values["token"]["value"] == "<redacted>"
    assert values["harnesses.x.default_max_tokens"]["value"] == 7
    assert _values(run_cli("config", "show", "--json"))["gateway.neuron_token"]["value"] is None
    assert _values(run_cli("config", "show", "--json", "--config", str(gateway)))["auth.require_api_key"][
        "value"
    ]
