"""The node's meter numbers as OpenMetrics text, served over HTTP on loopback.

``openmetrics(statuses)`` renders what the node's workers last reported
(``InstanceStatus.meter``, the agent's ``loads``) as counters per instance (calls,
failures, wall and CPU seconds, bytes, fuel, joules) and a gauge of peak memory, labelled
with app, mote, instance and, for joules, the estimating method. ``MetricsServer``
answers ``GET /metrics`` with it on 127.0.0.1, on a port the OS picks; its address is in
the node's record (``NodeRecord.metrics``). It is unauthenticated, like any local
exporter: anyone on the machine can read which motes run here and what they use, no
payloads and no secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from ..wire.messages import InstanceStatus

__all__ = ["CONTENT_TYPE", "MetricsServer", "openmetrics"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_COUNTERS: tuple[tuple[str, str, str], ...] = (
    # (metric family, unit, help); values are taken by _values below
    ("motes_calls", "", "calls served"),
    ("motes_call_failures", "", "calls that failed"),
    ("motes_call_wall_seconds", "seconds", "wall time of calls"),
    ("motes_call_cpu_seconds", "seconds", "CPU time of calls, by mode"),
    ("motes_call_in_bytes", "bytes", "request bytes received"),
    ("motes_call_out_bytes", "bytes", "reply bytes sent"),
    ("motes_call_fuel", "", "WebAssembly fuel used"),
    ("motes_call_energy_joules", "joules", "estimated energy of calls, by method"),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _values(family: str, s: InstanceStatus) -> list[tuple[str, float]]:
    """(extra labels, value) of one family for one instance."""
    m = s.meter
    assert m is not None
    if family == "motes_calls":
        return [("", s.served)]
    if family == "motes_call_failures":
        return [("", s.failed)]
    if family == "motes_call_wall_seconds":
        return [("", m.wall_s)]
    if family == "motes_call_cpu_seconds":
        return [(',mode="user"', m.cpu_user_s), (',mode="system"', m.cpu_sys_s)]
    if family == "motes_call_in_bytes":
        return [("", m.bytes_in)]
    if family == "motes_call_out_bytes":
        return [("", m.bytes_out)]
    if family == "motes_call_fuel":
        return [("", m.fuel)]
    band = f"{m.band:g}"
    return [(f',method="{_label(m.method)}",band="{band}"', m.joules)]


def openmetrics(statuses: Iterable[InstanceStatus], node: str) -> str:
    """The OpenMetrics text of the metered instances in ``statuses``."""
    metered = [s for s in statuses if s.meter is not None]
    lines: list[str] = []
    for family, unit, text in _COUNTERS:
        lines.append(f"# TYPE {family} counter")
        if unit:
            lines.append(f"# UNIT {family} {unit}")
        lines.append(f"# HELP {family} {text}")
        for s in metered:
            base = (
                f'node="{_label(node)}",app="{_label(s.app)}",mote="{_label(s.mote)}",'
                f'instance="{_label(s.iid)}"'
            )
            for extra, value in _values(family, s):
                lines.append(f"{family}_total{{{base}{extra}}} {float(value)!r}")
    family = "motes_instance_peak_memory_bytes"
    lines += [f"# TYPE {family} gauge", f"# UNIT {family} bytes"]
    lines.append(f"# HELP {family} peak resident memory of the instance's worker")
    for s in metered:
        assert s.meter is not None
        labels = f'node="{_label(node)}",app="{_label(s.app)}",mote="{_label(s.mote)}"'
        lines.append(f'{family}{{{labels},instance="{_label(s.iid)}"}} {s.meter.peak_rss}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` on 127.0.0.1 (port 0: the OS picks); ``url`` once started."""

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}/metrics"
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0]
            if method == b"GET" and path.split(b"?")[0] == b"/metrics":
                body = self._render().encode()
                status, ctype = b"200 OK", CONTENT_TYPE.encode()
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("metrics request: %r", exc)
        except OSError as exc:
            log.debug("metrics request: %r", exc)
        finally:
            writer.close()
