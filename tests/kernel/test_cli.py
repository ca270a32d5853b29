"""The command line: help for every command, version, plugin listing, plugin-added commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import Result

from cortex_kernel.cli import build_cli

from .conftest import write_distribution


def _all_commands(
    group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(_all_commands(command, click.Context(command, parent=ctx), path))
    return found


def test_every_subcommand_has_help(run_cli: Callable[..., Result]) -> None:
    cli = build_cli()
    with click.Context(cli) as ctx:
        commands = _all_commands(cli, ctx)
    names = {path[0] for path in commands}
    assert {"serve", "neuron", "status", "models", "load", "unload", "plugins", "config", "deploy"} <= names
    for path in commands:
        result = run_cli(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.output and path[-1] in result.output
        # A real help text, not just the usage line.
        assert len(result.output.splitlines()) > 4, path


def test_root_help_and_version(run_cli: Callable[..., Result]) -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "serve" in result.output and "neuron" in result.output
    version = run_cli("--version")
    assert version.exit_code == 0
    from cortex_kernel._version import package_version

    assert package_version() in version.output


def test_console_script_in_a_fresh_process(clean_env: dict[str, str]) -> None:
    """The installed entry point works outside the test process (no state shared)."""
    exe = Path(sys.executable).with_name("cortex-kernel")
    out = subprocess.run(
        [str(exe), "plugins", "--json"], env=clean_env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert {"neuron", "transformers", "deploy"} <= set(plugins)
    assert plugins["neuron"]["distribution"] == "cortex-kernel"
    assert "register_app_parts" in plugins["neuron"]["hooks"]
    helped = subprocess.run([str(exe), "--help"], env=clean_env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "Commands:" in helped.stdout


def test_plugins_table_lists_builtins_with_versions(run_cli: Callable[..., Result]) -> None:
    result = run_cli("plugins")
    assert result.exit_code == 0
    from cortex_kernel._version import package_version

    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert package_version() in lines["neuron"]
    assert "register_harnesses" in lines["transformers"]


def test_third_party_plugin_is_listed_and_adds_a_command(tmp_path: Path, clean_env: dict[str, str]) -> None:
    site = write_distribution(tmp_path / "site")
    env = {**clean_env, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    exe = Path(sys.executable).with_name("cortex-kernel")
    listed = subprocess.run(
        [str(exe), "plugins", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["hello"]["distribution"] == "cortex-hello"
    assert plugins["hello"]["version"] == "1.2.3"
    assert plugins["hello"]["hooks"] == ["register_app_parts", "register_commands"]
    said = subprocess.run([str(exe), "hello"], env=env, capture_output=True, text=True, timeout=60)
    assert said.returncode == 0 and said.stdout.strip() == "hello from a plugin"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_blocking_a_builtin_by_name(run_cli: Callable[..., Result], how: str) -> None:
    if how == "flag":
        result = run_cli("--block-plugin", "deploy", "plugins", "--json")
    else:
        result = run_cli("plugins", "--json", env={"CORTEX_KERNEL_BLOCK_PLUGINS": "deploy"})
    assert result.exit_code == 0, result.output
    names = {p["name"] for p in json.loads(result.output)}
    assert "deploy" not in names and "neuron" in names
    # Its command disappears with it.
    missing = run_cli("--block-plugin", "deploy", "deploy", "--help")
    assert missing.exit_code == 2 and "No such command" in missing.output


@pytest.mark.parametrize(
    ("command", "config", "essential"),
    [
        ("serve", '[[neurons]]\nname = "n1"\nendpoint = "http://127.0.0.1:9"\n', "gateway"),
        ("neuron", 'listen = "127.0.0.1:0"\nname = "n1"\n', "neuron"),
    ],
)
def test_a_daemon_without_its_essential_plugin_refuses_to_start(
    run_cli: Callable[..., Result], tmp_path: Path, command: str, config: str, essential: str
) -> None:
    path = tmp_path / f"{command}.toml"
    path.write_text(config)
    result = run_cli("--block-plugin", essential, command, "--config", str(path))
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: no plugin serves the") and f"{essential!r} plugin is blocked" in line
