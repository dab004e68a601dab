"""The node's meter: usage reports into the history stream, and OpenMetrics text.

``UsageLedger`` turns the workers' running totals into what each instance used since
the last report; ``publish_usage`` sends one ``UsageReport`` a second at most into
``MOTES_USAGE`` from its own task, so no call waits on it.

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
import time
from collections.abc import Callable, Iterable

from ..errors import MotesError
from ..wire import resources, subjects
from ..wire.bus import Bus
from ..wire.codec import encode
from ..wire.messages import InstanceStatus, MeterTotals, UsageReport, UsageRow

__all__ = [
    "CONTENT_TYPE",
    "MetricsServer",
    "UsageLedger",
    "openmetrics",
    "publish_usage",
]

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


class UsageLedger:
    """What each instance used since the last ``take`` (pure: readings in, report out)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._last: dict[str, InstanceStatus] = {}

    def take(self, statuses: Iterable[InstanceStatus], start: float, end: float) -> UsageReport:
        rows = []
        seen: dict[str, InstanceStatus] = {}
        for s in statuses:
            m = s.meter
            if m is None:
                continue
            seen[s.iid] = s
            prev = self._last.get(s.iid)
            p = prev.meter if prev is not None and prev.meter is not None else MeterTotals()
            calls = s.served - (prev.served if prev is not None else 0)
            if calls <= 0 and m.wall_s == p.wall_s:
                continue
            delta = MeterTotals(
                wall_s=m.wall_s - p.wall_s,
                cpu_user_s=m.cpu_user_s - p.cpu_user_s,
                cpu_sys_s=m.cpu_sys_s - p.cpu_sys_s,
                peak_rss=m.peak_rss,
                bytes_in=m.bytes_in - p.bytes_in,
                bytes_out=m.bytes_out - p.bytes_out,
                fuel=m.fuel - p.fuel,
                joules=m.joules - p.joules,
                method=m.method,
                band=m.band,
            )
            failed = s.failed - (prev.failed if prev is not None else 0)
            rows.append(
                UsageRow(app=s.app, mote=s.mote, iid=s.iid, calls=calls, failed=failed, meter=delta)
            )
        self._last = seen
        return UsageReport(node=self.node, start=start, end=end, rows=rows)


async def publish_usage(
    bus: Bus,
    ledger: UsageLedger,
    statuses: Callable[[], Iterable[InstanceStatus]],
    interval: float = 1.0,
) -> None:
    """Forever: every ``interval`` seconds, the usage since the last report, if any."""
    start = time.time()
    subject = subjects.usage(ledger.node)
    while True:
        await asyncio.sleep(interval)
        end = time.time()
        report = ledger.take(list(statuses()), start, end)
        start = end
        if not report.rows or not bus.connected:
            continue
        try:
            await bus.ensure_stream(resources.USAGE)
            await bus.publish_durable(subject, encode(report))
        except MotesError as exc:  # history misses this interval; the totals do not
            log.debug("usage report: %s", exc)


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
