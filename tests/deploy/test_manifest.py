"""Reading fleet manifests: defaults, resolution, and errors that name file, key and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cortex_deploy.manifest import load_manifest
from cortex_kernel.config.errors import ConfigError

REPO = """\
[repo]
id = "cortex-unstable"
url = "https://rpm.example.org/channels/cortex-unstable.repo"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(REPO + textwrap.dedent(text))
    return path


def test_defaults_and_order(tmp_path: Path) -> None:
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "neuron.toml").write_text("")
    path = write(
        tmp_path,
        """
        [[neurons]]
        host = "gpu-a"
        flavour = "vllm"
        [[neurons.files]]
        source = "hosts/neuron.toml"
        destination = "/etc/neuron/neuron.toml"
        group = "neuron"
        mode = "640"

        [[gateways]]
        host = "gw"
        """,
    )

    manifest = load_manifest(path)

    assert manifest.repo.file_name == "cortex-unstable.repo"
    assert manifest.repo.path == "/etc/yum.repos.d/cortex-unstable.repo"
    assert manifest.ssh.sudo is True
    gateway, neuron = manifest.targets  # gateways first, whatever the file order
    assert (gateway.host, gateway.package, gateway.unit) == ("gw", "cortex-kernel", "cortex-kernel.service")
    assert gateway.health_url == "http://127.0.0.1:31313/health"
    assert (neuron.package, neuron.unit) == ("cortex-neuron-vllm", "cortex-neuron.service")
    assert neuron.health_url == "http://127.0.0.1:13131/health"
    (synced,) = neuron.files
    assert synced.source == (tmp_path / "hosts" / "neuron.toml").resolve()
    assert (synced.owner, synced.group, synced.mode) == ("root", "neuron", 0o640)
    assert synced.describe == "/etc/neuron/neuron.toml (root:neuron 0640)"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[[gateways]]\nhost = "gw"\nflavor = "cpu"\n', "fleet.toml:6: gateways[0].flavor: unknown key"),
        ('[[neurons]]\nhost = "n"\n', "neurons[0]: Object missing required field `flavour`"),
        (
            '[[neurons]]\nhost = "n"\nflavour = "GPU!"\n',
            "fleet.toml:6: neurons[0].flavour: Expected `str` matching",
        ),
        (
            '[[gateways]]\nhost = "gw"\n[[gateways.files]]\nsource = "absent.toml"\ndestination = "/etc/x"\n',
            "gateways[0].files[0].source: absent.toml is not a file",
        ),
        (
            '[[gateways]]\nhost = "gw"\n[[gateways.files]]\nsource = "fleet.toml"\ndestination = "etc/x"\n',
            "gateways[0].files[0].destination: Expected `str` matching regex '^/'",
        ),
        (
            '[[gateways]]\nhost = "gw"\n[[gateways.files]]\nsource = "fleet.toml"\ndestination = "/x"\n'
            'mode = "4755"\n',
            "gateways[0].files[0].mode: setuid, setgid and sticky bits are not allowed",
        ),
        (
            '[[neurons]]\nhost = "n"\nflavour = "cpu"\n[[neurons]]\nhost = "n"\nflavour = "vllm"\n',
            "listed twice",
        ),
        ("", "gateways: names no hosts"),
        ("[[gateways]\n", "fleet.toml:4: invalid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_manifest(write(tmp_path, body))
    assert expected in str(caught.value)


def test_repo_url_must_name_a_repo_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[repo]\nid = "r"\nurl = "https://rpm.example.org/"\n[[gateways]]\nhost = "gw"\n')
    with pytest.raises(ConfigError, match=r"repo.url: name the .repo file"):
        load_manifest(path)
    path.write_text(
        path.read_text().replace('url = "https://rpm.example.org/"', 'url = "x"\nfile = "r.repo"')
    )
    assert load_manifest(path).repo.path == "/etc/yum.repos.d/r.repo"
