"""The call meter's CPU accounting and the power models (pure, real clocks and files)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from motes.errors import RequestError
from motes.meter import CallMeter
from motes.meter.power import Rapl, detect_model
from motes.wire.messages import Ok


def _burn(seconds: float) -> float:
    start = time.process_time()
    while time.process_time() - start < seconds:
        sum(range(1000))
    return time.process_time() - start


@pytest.mark.parametrize("seconds", [0.05, 0.2])
def test_a_calls_cpu_time_is_within_ten_percent_of_what_it_measured(seconds: float) -> None:
    meter = CallMeter()
    started = meter.begin(bytes_in=123)
    inside = _burn(seconds)
    meter.end(started, Ok(None), bytes_out=45)
    rec = meter.last
    assert rec is not None
    assert abs(rec.cpu_user_s + rec.cpu_sys_s - inside) <= 0.1 * inside
    assert rec.wall_s >= inside * 0.9
    assert (rec.bytes_in, rec.bytes_out) == (123, 45)
    assert meter.usage.cpu_s == pytest.approx(rec.cpu_user_s + rec.cpu_sys_s)


def test_overlapping_calls_share_the_cpu_and_nothing_is_counted_twice() -> None:
    meter = CallMeter()
    before = time.process_time()
    a = meter.begin()
    _burn(0.05)  # a alone
    b = meter.begin()
    _burn(0.1)  # a and b: half each
    meter.end(a, Ok(None))
    a_cpu = meter.usage.cpu_s
    _burn(0.05)  # b alone
    meter.end(b, Ok(None))
    total = time.process_time() - before
    b_cpu = meter.usage.cpu_s - a_cpu
    assert meter.usage.cpu_s <= total
    assert meter.usage.cpu_s == pytest.approx(total, rel=0.1)
    assert a_cpu == pytest.approx(0.1, rel=0.2) and b_cpu == pytest.approx(0.1, rel=0.2)


def test_cpu_between_calls_is_charged_to_none_and_the_switch_turns_it_off() -> None:
    meter = CallMeter()
    meter.end(meter.begin(), Ok(None))
    _burn(0.05)  # nothing in flight
    meter.end(meter.begin(), Ok(None))
    assert meter.usage.cpu_s < 0.01
    off = CallMeter(cpu=False)
    started = off.begin()
    _burn(0.02)
    off.end(started, Ok(None), fuel=7)
    assert off.usage.cpu_s == 0 and off.usage.fuel == 7 and off.usage.served == 1


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "name"),
    [
        ({"proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.4\x00"}, "Raspberry Pi 4"),
        ({"proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00"}, "Raspberry Pi 5"),
        ({"proc/cpuinfo": "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"}, "AMD EPYC"),
        ({"proc/cpuinfo": "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"}, "Intel Xeon"),
    ],
)
def test_the_power_model_comes_from_the_table_of_known_cpus(
    tmp_path: Path, files: dict[str, str], name: str
) -> None:
    model = detect_model(root=_tree(tmp_path, files))
    assert model.name.startswith(name) and model.source == "table"
    energy = model.energy(2.0)
    assert energy.joules == pytest.approx(2.0 * model.max_w)
    assert energy.method == f"model:table:{model.name}" and 0 < energy.band < 1


def test_an_unknown_cpu_gets_the_default_and_the_owner_may_override(tmp_path: Path) -> None:
    unknown = detect_model(root=_tree(tmp_path, {"proc/cpuinfo": "model name: Mystery\n"}), cores=4)
    assert unknown.source == "default" and unknown.band >= 0.5
    assert unknown.watts(4, 4) == pytest.approx(4 * unknown.max_w)
    own = detect_model(idle_w=1.0, max_w=5.0, root=tmp_path)
    assert own.method == "model:config:owner" and own.energy(1.0).joules == 5.0
    with pytest.raises(RequestError, match="idle_w"):
        detect_model(idle_w=6.0, max_w=5.0)


def test_rapl_sums_package_domains_only_and_survives_a_wrap(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "intel-rapl:0/name": "package-0\n",
            "intel-rapl:0/energy_uj": "1000000\n",
            "intel-rapl:0/max_energy_range_uj": "262143328850\n",
            "intel-rapl:0:0/name": "core\n",
            "intel-rapl:0:0/energy_uj": "5\n",
            "intel-rapl:0:0/max_energy_range_uj": "100\n",
            "intel-rapl:1/name": "psys\n",
            "intel-rapl:1/energy_uj": "9\n",
            "intel-rapl:1/max_energy_range_uj": "100\n",
        },
    )
    rapl = Rapl.detect(root)
    assert rapl is not None
    (root / "intel-rapl:0/energy_uj").write_text("3500000\n")
    (root / "intel-rapl:0:0/energy_uj").write_text("99\n")
    assert rapl.take_joules() == pytest.approx(2.5)
    (root / "intel-rapl:0/energy_uj").write_text("500000\n")  # wrapped
    assert rapl.take_joules() == pytest.approx((262143328850 + 1 - 3500000 + 500000) / 1e6)
    assert Rapl.detect(tmp_path / "absent") is None


def _inst(iid: str, served: int, cpu: float, joules: float, hist: dict[int, int]) -> object:
    from motes.wire.messages import InstanceStatus, MeterTotals

    meter = MeterTotals(cpu_user_s=cpu, joules=joules, method="model:table:x", band=0.5)
    return InstanceStatus(
        iid=iid, app="a", mote="m", digest="", node="n", state="ready",
        served=served, latency=hist, meter=meter,
    )  # fmt: skip


def test_top_rates_are_differences_over_the_interval_and_new_instances_wait() -> None:
    from motes.cli.usage_cmds import rates, totals

    before = [_inst("i1", 10, 1.0, 3.5, {40: 10})]
    after = [_inst("i1", 30, 1.5, 5.25, {40: 10, 44: 20}), _inst("i2", 5, 9.0, 9.0, {})]
    (r,) = rates(before, after, 2.0)  # type: ignore[arg-type]
    assert (r.mote, r.calls_per_s, r.cpu_pct, r.watts) == ("a.m", 10.0, 25.0, 0.875)
    assert r.p50_ms == pytest.approx(2 ** (45 / 4) / 1000)  # the interval's calls only
    (t,) = totals(after, "app")  # type: ignore[arg-type]
    assert t["calls"] == 35 and t["joules"] == 14.25 and t["methods"] == ["model:table:x"]
