"""Fixtures for kernel tests: throwaway third-party plugin distributions and CLI runners."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

THIRD_PARTY_MODULE = '''
"""A third-party plugin, installed only as a dist-info with one entry point."""
import asyncio

from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from cortex_kernel import hookimpl
from cortex_kernel.kernel import AppPart


async def hello(request):
    return JSONResponse({"hello": request.app.state.__dict__.get("_state", {}).get("who", "world")})


async def slow(request):
    async def body():
        for i in range(int(request.query_params.get("n", "5"))):
            yield f"chunk {i}\\n".encode()
            await asyncio.sleep(float(request.query_params.get("gap", "0.2")))
    return StreamingResponse(body(), media_type="text/plain")


@hookimpl
def register_app_parts(role, kernel):
    return [AppPart(name="hello", routes=[Route("/hello", hello), Route("/slow", slow)])]


@hookimpl
def register_commands(cli):
    import click

    @click.command("hello")
    def hello_cmd():
        """Say hello from a third-party plugin."""
        click.echo("hello from a plugin")

    cli.add_command(hello_cmd)
'''


def write_distribution(root: Path, name: str = "cortex-hello", module: str = "cortex_hello") -> Path:
    """Write ``module.py`` plus a ``.dist-info`` declaring it under the ``cortex_kernel`` group."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(THIRD_PARTY_MODULE))
    dist = root / f"{name.replace('-', '_')}-1.2.3.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[cortex_kernel]\nhello = {module}\n")
    (dist / "RECORD").write_text("")
    return root


@pytest.fixture
def third_party_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A path holding a third-party plugin distribution, prepended to ``sys.path``."""
    root = write_distribution(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("cortex_hello", None)


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no CORTEX_/NEURON_ variables and config dirs pointing at empty temp dirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORTEX_", "NEURON_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-user")
    env["XDG_CONFIG_DIRS"] = str(tmp_path / "xdg-site")
    env["HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture
def run_cli(clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Invoke the CLI in-process with ``clean_env`` as the whole environment."""
    from cortex_kernel.cli import build_cli
    from cortex_kernel.cli.context import CliState

    for key in list(os.environ):
        if key.startswith(("CORTEX_", "NEURON_", "XDG_")):
            monkeypatch.delenv(key)
    for key in ("XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "HOME"):
        monkeypatch.setenv(key, clean_env[key])

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        environ = {**clean_env, **(env or {})}
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        runner = CliRunner()
        return runner.invoke(build_cli(), list(args), obj=CliState(environ=environ), catch_exceptions=False)

    return invoke
