"""A neuron without a token refuses to listen beyond loopback unless the operator insists."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from cortex_kernel.cli.neuron_cmd import check_exposure
from cortex_kernel.config.addresses import parse_listen
from cortex_kernel.config.errors import ConfigError
from cortex_kernel.config.schema import NeuronConfig
from tests.daemons import EXE


@pytest.mark.parametrize("listen", ["0.0.0.0:13131", "[::]:13131", "10.0.0.5:1", "gpu-1.internal:1"])
def test_refused_beyond_loopback_without_a_token(listen: str) -> None:
    with pytest.raises(ConfigError, match="without a token"):
        check_exposure(parse_listen(listen), NeuronConfig(), None)
    check_exposure(parse_listen(listen), NeuronConfig(token="t"), None)
    check_exposure(parse_listen(listen), NeuronConfig(insecure_listen=True), None)


@pytest.mark.parametrize("listen", ["127.0.0.1:13131", "127.0.0.2:1", "[::1]:1", "localhost:1"])
def test_loopback_needs_no_token(listen: str) -> None:
    check_exposure(parse_listen(listen), NeuronConfig(), None)


def test_the_shipped_default_exits_2_with_one_line(clean_env: dict[str, str], tmp_path: Path) -> None:
    # Not the example file's listen on loopback: the daemon must refuse before it serves, so a
    # regression shows as a timeout here rather than a neuron left running.
    config = tmp_path / "neuron.toml"
    config.write_text(f'cache_dir = "{tmp_path / "cache"}"\n')
    result = subprocess.run(
        [EXE, "neuron", "--config", str(config)], env=clean_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0:13131 without a token" in lines[0], result.stderr
    assert "insecure_listen" in lines[0]


def test_the_operator_can_insist(clean_env: dict[str, str], tmp_path: Path) -> None:
    # A port already taken on all interfaces: a neuron past the exposure check fails to bind (1).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "neuron.toml"
        config.write_text(f'listen = "0.0.0.0:{port}"\ncache_dir = "{tmp_path / "cache"}"\n')
        command = [EXE, "neuron", "--config", str(config)]
        refused = subprocess.run(command, env=clean_env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "without a token" in refused.stderr
        env = {**clean_env, "NEURON_INSECURE_LISTEN": "true"}
        insisted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert insisted.returncode == 1 and "without a token" not in insisted.stderr, insisted.stderr
