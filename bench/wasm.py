"""wasm: a WebAssembly mote against the same mote native, on one mesh, same run.

``bench/apps/wasm_echo.py`` declares one echo function twice: ``echo_native`` (the
in-process host) and ``echo_wasm`` (``sandbox="wasm"``: componentize-py component under
wasmtime with fuel, an epoch deadline and a memory limit). Rows, wasm ÷ native:

- ``wasm_call_rtt_us``: p50 of ``rtt_calls`` calls one at a time, interleaved.
- ``wasm_call_throughput``: calls/s, ``tput_calls`` calls ``window`` deep, interleaved.
- ``wasm_instance_start_ms``: a new instance from the node's cache (``WasmHost.load``:
  deserialize the compiled component, instantiate) against ``InProcessHost.load`` of the
  same module freshly imported; both in this process, median of ``START_RUNS``.
- ``wasm_instantiate_ms`` (no peer): one more instance from a component already loaded,
  what a wasm mote pays after a trap.

The first run on a machine compiles the app (minutes on a busy two-core box) into
``bench/.wasm-cache``; later runs only deserialize.
Run: ``python -m bench --quick --only wasm``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from motes.app.bundle import build_bundle, extract_bundle, load_app_file
from motes.config import NodeConfig, Timing
from motes.sandbox import host_for
from motes.sandbox._wasmbuild import ensure_built
from motes.sandbox.inprocess import InProcessHost
from motes.sandbox.wasm import WasmHost
from motes.testing import local_mesh
from motes.wire.messages import InstanceSpec

from .contenders import MotesContender
from .paired import ratio_row, rtt_p50_us
from .runner import BENCH, Result, Session, interleave
from .stats import median

METRIC = "wasm"
APP = BENCH / "apps" / "wasm_echo.py"
CACHE = BENCH / ".wasm-cache"
START_RUNS = 20
WASM, NATIVE = "wasm", "native"


async def _starts(bundle_dir: Path, digest: str, runs: int) -> dict[str, float]:
    """Median ms of a wasm instance start (warm cache), a native one, and a re-instance."""
    await ensure_built(bundle_dir, digest, CACHE)
    node = NodeConfig(
        home=tempfile.mkdtemp(prefix="motes-bench-wasm-"), id="bench", wasm_cache=str(CACHE)
    )
    times: dict[str, list[float]] = {WASM: [], NATIVE: [], "instantiate": []}
    for _ in range(runs):
        for mote, name in (("echo_wasm", WASM), ("echo_native", NATIVE)):
            spec = InstanceSpec(
                iid="b", app="wasmbench", mote=mote, digest=digest, module="wasm_echo"
            )
            sys.modules.pop("wasm_echo", None)  # a native start imports the module anew
            host = host_for(spec, bundle_dir, node)
            t = time.perf_counter()
            await host.load(bundle_dir, spec)
            times[name].append((time.perf_counter() - t) * 1e3)
            if isinstance(host, WasmHost):
                t = time.perf_counter()
                host._fresh()
                times["instantiate"].append((time.perf_counter() - t) * 1e3)
            else:
                assert isinstance(host, InProcessHost)
            await host.close()
    # Leave no trace of the native loads: the deploy after this imports the app itself.
    sys.modules.pop("wasm_echo", None)
    while str(bundle_dir) in sys.path:
        sys.path.remove(str(bundle_dir))
    return {k: statistics.median(v) for k, v in times.items()}


async def measure(s: Session) -> list[Result]:
    bundle = build_bundle(load_app_file(APP))
    with tempfile.TemporaryDirectory(prefix="motes-bench-wasm-") as tmp:
        bundle_dir = extract_bundle(bundle.data, bundle.digest, Path(tmp) / "bundle")
        starts = await _starts(bundle_dir, bundle.digest, START_RUNS)
        async with local_mesh(Path(tmp), nodes=1, timing=Timing(), wasm_cache=CACHE) as mesh:
            async with mesh.client() as client:
                await client.deploy(APP, timeout=900)
                contenders = [
                    MotesContender(client, "wasmbench.echo_wasm", WASM),
                    MotesContender(client, "wasmbench.echo_native", NATIVE),
                ]
                p50, reps = await rtt_p50_us(s, METRIC, contenders)
                tput = await interleave(
                    f"{METRIC} throughput",
                    contenders,
                    lambda c: c.call_throughput(s.sizes.tput_calls, s.sizes.window),
                    s.sizes.reps,
                    lambda v: f"{v:,.0f} calls/s",
                )
    calls = {name: median(v) for name, v in tput.items()}
    again = round(starts["instantiate"], 3)
    return [
        ratio_row("wasm_call_rtt_us", "us", p50[WASM], p50[NATIVE], NATIVE, reps),
        ratio_row("wasm_call_throughput", "calls/s", calls[WASM], calls[NATIVE], NATIVE, reps),
        ratio_row("wasm_instance_start_ms", "ms", starts[WASM], starts[NATIVE], NATIVE, START_RUNS),
        Result("wasm_instantiate_ms", "ms", again, None, None, None, START_RUNS),
    ]


async def run(s: Session) -> list[Result]:
    s.details[METRIC] = {"start_runs": START_RUNS, "cache": str(CACHE)}
    return await measure(s)
