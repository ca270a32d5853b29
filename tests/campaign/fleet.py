"""A real fleet for the campaign: one gateway (keys, one alias) over real neurons (a token).

Used by the tests (short campaign) and by ``bench/campaign.py`` (long campaign and soak), so
both drive exactly the same daemons and configuration.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cortex_kernel.keys import key_digest
from tests.daemons import Daemon, free_port, http_json, model_toml, toml_str, write_toml

CLIENT_KEY = "campaign-client-key"
ADMIN_KEY = "campaign-admin-key"
NEURON_TOKEN = "campaign-neuron-token"
ALIAS = "chat-alias"
CHAT = "tiny-chat"
EMBED = "tiny-embed"
MAX_BODY_BYTES = 1024 * 1024
# The chat models' prefix cache bound. The default (512 MB) would take the soak's stream of
# short, ever-different sequences (~20 KB each, ~300 a minute per neuron) over an hour to fill,
# so a 15-minute soak would see a bounded cache filling as steady growth; 4 MB fills within the
# first minute, and the soak then measures the neurons at their steady state.
PREFIX_CACHE_MB = 4
# The gateway's Responses store bound. The default (1,024 responses) is reached by the soak's
# hostile traffic only after about 40 minutes (~25 stored a minute, ~2.9 KB each in the gateway),
# so a 15-minute soak would see a bounded store filling as steady growth (~1 MB); 32 fill within
# the first two minutes, and the soak then measures the gateway at its steady state.
RESPONSES_STORED = 32


def build_models(root: Path) -> tuple[Path, Path]:
    """The tiny synthetic chat and embedding models under ``root`` (built locally, never downloaded)."""
    from cortex_transformers.synthetic import build_tiny_chat_model, build_tiny_embedding_model

    return build_tiny_chat_model(root / "tiny-chat"), build_tiny_embedding_model(root / "tiny-embed")


_SMALL_CACHE = f"options = {{ prefix_cache_mb = {PREFIX_CACHE_MB} }}"


def catalogue(chat: Path, embed: Path) -> str:
    return (
        f'aliases = {{ "{ALIAS}" = "{CHAT}" }}\n'
        + model_toml(CHAT, chat, _SMALL_CACHE, vram_mb=16)
        + model_toml(EMBED, embed, task="embedding", vram_mb=16)
        + model_toml("never-loaded", chat, _SMALL_CACHE, vram_mb=16)
    )


@dataclass
class Fleet:
    """The daemons of one campaign run and the keys to talk to them."""

    gateway: Daemon
    neurons: list[Daemon]
    home: Path
    extra_logs: list[Path] = field(default_factory=list)

    @property
    def daemons(self) -> list[Daemon]:
        return [self.gateway, *self.neurons]

    def stop(self) -> None:
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                daemon.stop()

    def alive(self) -> dict[str, bool]:
        return {self.name(d): d.alive() for d in self.daemons}

    def name(self, daemon: Daemon) -> str:
        return "gateway" if daemon is self.gateway else f"neuron{self.neurons.index(daemon) + 1}"

    def tracebacks(self) -> dict[str, int]:
        """How many ``Traceback`` lines each daemon's log holds."""
        return {self.name(d): d.log_text().count("Traceback") for d in self.daemons}

    def counters(self) -> dict[str, int]:
        """Every in-flight and admission counter of the fleet, by where it was read (all 0 when idle)."""
        found: dict[str, int] = {}
        _, fleet, _ = http_json("GET", f"{self.gateway.url}/admin/fleet", token=ADMIN_KEY, timeout=10)
        for node in fleet["nodes"]:
            for model in node["models"]:
                found[f"gateway:{node['name']}:{model['id']}:in_flight"] = model["in_flight"]
        for index, neuron in enumerate(self.neurons, 1):
            _, health, _ = http_json("GET", f"{neuron.url}/health", timeout=10)
            for model_id, model in health["models"].items():
                for key in ("in_flight", "queued"):
                    found[f"neuron{index}:{model_id}:{key}"] = model[key]
        return found

    def rss_kb(self) -> dict[str, int]:
        """Each daemon's resident set size in KiB (from /proc)."""
        sizes = {}
        for daemon in self.daemons:
            assert daemon.process is not None
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes[self.name(daemon)] = int(line.split()[1])
        return sizes


def start_fleet(home: Path, models: tuple[Path, Path], *, neurons: int = 1, preload: bool = True) -> Fleet:
    """Start ``neurons`` neurons and a gateway over them; ``preload`` loads the chat model first."""
    chat, embed = models
    roots = sorted({str(chat.parent), str(embed.parent)})
    started: list[Daemon] = []
    try:
        for index in range(1, neurons + 1):
            port = free_port()
            where = home / f"neuron{index}"
            write_toml(where / "models.toml", catalogue(chat, embed))
            config = write_toml(
                where / "neuron.toml",
                f'listen = "127.0.0.1:{port}"\nname = "neuron{index}"\n'
                f"cache_dir = {toml_str(where / 'cache')}\nmodel_roots = {roots!r}\n"
                f"default_models = []\ntoken = {toml_str(NEURON_TOKEN)}\n".replace("'", '"'),
            )
            neuron = Daemon(
                ["neuron", "--config", str(config)],
                port,
                where / "neuron.log",
                env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
            )
            started.append(neuron.start())
            neuron.wait_healthy()
        port = free_port()
        etc = home / "gateway"
        write_toml(etc / "models.toml", catalogue(chat, embed))
        entries = "".join(
            f'\n[[neurons]]\nname = "neuron{i}"\nendpoint = {toml_str(n.url)}\n'
            for i, n in enumerate(started, 1)
        )
        config = write_toml(
            etc / "cortex.toml",
            f'[gateway]\nlisten = "127.0.0.1:{port}"\nmetrics_listen = "127.0.0.1:{free_port()}"\n'
            f"neuron_token = {toml_str(NEURON_TOKEN)}\nmax_body_bytes = {MAX_BODY_BYTES}\n\n"
            f"[auth]\nrequire_api_key = true\napi_keys = [{toml_str(key_digest(CLIENT_KEY))}]\n"
            f"admin_keys = [{toml_str(key_digest(ADMIN_KEY))}]\n\n"
            f"[responses]\nstore_max_responses = {RESPONSES_STORED}\n{entries}",
        )
        gateway = Daemon(["serve", "--config", str(config)], port, etc / "gateway.log")
        started.append(gateway.start())
        gateway.wait_healthy()
    except BaseException:
        for daemon in started:
            daemon.kill()
        raise
    fleet = Fleet(gateway=gateway, neurons=started[:-1], home=home)
    if preload:
        for neuron in fleet.neurons:
            for model in (CHAT, EMBED):
                status, body, _ = http_json(
                    "POST",
                    f"{neuron.url}/models/load",
                    {"model": model, "wait": True},
                    token=NEURON_TOKEN,
                    timeout=120,
                )
                assert status == 200, body
    return fleet
