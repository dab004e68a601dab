"""Names users type (``app.mote``) and settings read at the edge (env, home folder)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from motes.config import (
    CONFIG_FILE,
    MESH_FILE,
    Config,
    LatticeConfig,
    Timing,
    default_home,
    load_config,
    read_mesh_file,
    resolve_home,
    write_config,
)
from motes.errors import MeshNotRunning, RequestError
from motes.ids import MoteRef, check_name


@pytest.mark.parametrize(
    ("text", "app", "mote"),
    [("wordcount.count", "wordcount", "count"), ("_a.B-2", "_a", "B-2"), ("a.Tally", "a", "Tally")],
)
def test_a_mote_ref_parses_and_prints_back(text: str, app: str, mote: str) -> None:
    ref = MoteRef.parse(text)

    assert (ref.app, ref.mote) == (app, mote)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wordcount", r"'wordcount' is not APP\.MOTE \(for example 'wordcount\.count'\)"),
        ("", r"'' is not APP\.MOTE"),
        (None, r"None is not APP\.MOTE"),
        (".count", r"app name '' is not valid"),
        ("wordcount.", r"mote name '' is not valid"),
        ("a.b.c", r"mote name 'b\.c' is not valid"),
        ("1a.count", r"app name '1a' is not valid"),
        ("a.co unt", r"mote name 'co unt' is not valid"),
    ],
)
def test_a_bad_mote_ref_says_what_is_wrong(text: Any, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        MoteRef.parse(text)


@pytest.mark.parametrize("name", [42, None, "x" * 64, "a\n"])
def test_check_name_refuses_non_names(name: Any) -> None:
    with pytest.raises(RequestError, match="at most 63 characters"):
        check_name("app", name)


# --- settings --------------------------------------------------------------------------


def _load(env: dict[str, str], tmp_path: Path) -> Config:
    return load_config(tmp_path, env=env)


def test_defaults_without_env(tmp_path: Path) -> None:
    config = _load({}, tmp_path)
    assert config.timing == Timing() and config.lattice == LatticeConfig()
    assert _load({"HOME": "/x", "MOTES_HOME": "/y"}, tmp_path).timing == Timing()


def test_motes_variables_override_the_defaults(tmp_path: Path) -> None:
    config = _load(
        {
            "MOTES_FAILURE_TIMEOUT_S": "3",
            "MOTES_HEARTBEAT_S": "0.1",
            "MOTES_WARM_WORKERS": "4",
            "MOTES_URL": "nats://a:1,nats://b:2",
            "MOTES_LATTICE_REPLICAS": "3",
            "MOTES_NODE_LABELS": "role=worker,zone=home",
        },
        tmp_path,
    )

    assert config.timing == Timing(failure_timeout_s=3.0, heartbeat_s=0.1, warm_workers=4)
    assert isinstance(config.timing.warm_workers, int)
    assert config.lattice.servers == ("nats://a:1", "nats://b:2")
    assert config.lattice.replicas == 3
    assert config.node.labels == {"role": "worker", "zone": "home"}


def test_the_process_env_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTES_CALL_TIMEOUT_S", "7.5")

    assert load_config(tmp_path).timing.call_timeout_s == 7.5


@pytest.mark.parametrize(
    ("var", "raw"),
    [("MOTES_HEARTBEAT_S", "fast"), ("MOTES_WARM_WORKERS", "2.5"), ("MOTES_LEASE_TTL_S", "")],
)
def test_a_bad_value_names_the_variable(var: str, raw: str, tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=f"^{var}='{raw}' is not a (whole )?number$"):
        _load({var: raw}, tmp_path)


def test_a_misspelt_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="MOTES_FAILURE_TIMOUT_S"):
        _load({"MOTES_FAILURE_TIMOUT_S": "3"}, tmp_path)


@pytest.mark.parametrize(
    ("var", "raw"),
    [("MOTES_FAILURE_TIMEOUT_S", "-1"), ("MOTES_HEARTBEAT_S", "nan"), ("MOTES_WARM_WORKERS", "-3")],
)
def test_a_value_out_of_range_is_an_error(var: str, raw: str, tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=var):
        _load({var: raw}, tmp_path)


def test_the_homes_file_then_env_then_flags(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(
        "[timing]\nheartbeat_s = 0.5\ncall_timeout_s = 9\n[lattice]\nreplicas = 3\n"
    )
    config = load_config(
        tmp_path,
        env={"MOTES_HEARTBEAT_S": "0.2"},
        flags={"lattice": {"servers": "nats://x:1"}},
    )

    assert config.timing.heartbeat_s == 0.2  # env over the file
    assert config.timing.call_timeout_s == 9.0  # the file over the default
    assert config.lattice.replicas == 3
    assert config.lattice.servers == ("nats://x:1",)  # flags over everything


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[timing]\nheartbeat = 1\n", "unknown setting.*heartbeat"),
        ("[clock]\nx = 1\n", "unknown section.*clock"),
        ("[lattice]\nreplicas = 'three'\n", "replicas='three' is not a number"),
        ("[timing\n", "is not valid"),
    ],
)
def test_a_bad_file_is_refused_with_its_reason(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(RequestError, match=message):
        load_config(tmp_path, env={})


def test_a_child_reads_back_the_settings_its_parent_wrote(tmp_path: Path) -> None:
    config = _load({"MOTES_HEARTBEAT_S": "0.1", "MOTES_URL": "nats://a:1"}, tmp_path)
    path = write_config(config, tmp_path / "run" / "child.json")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(env={"MOTES_CONFIG": str(path)}) == config


# --- home ------------------------------------------------------------------------------


def test_home_argument_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTES_HOME", str(tmp_path / "from-env"))

    assert resolve_home(tmp_path / "from-arg") == tmp_path / "from-arg"
    assert resolve_home(str(tmp_path / "from-arg")) == tmp_path / "from-arg"


def test_home_env_wins_over_the_platform_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTES_HOME", str(tmp_path / "from-env"))

    assert resolve_home() == tmp_path / "from-env"


@pytest.mark.parametrize("env", [None, ""])
def test_without_arg_or_env_home_is_the_platform_dir(
    monkeypatch: pytest.MonkeyPatch, env: str | None
) -> None:
    if env is None:
        monkeypatch.delenv("MOTES_HOME", raising=False)
    else:
        monkeypatch.setenv("MOTES_HOME", env)

    assert resolve_home() == default_home()
    assert default_home().name == "motes"


def test_home_expands_the_user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    assert resolve_home("~/mesh") == tmp_path / "mesh"
    monkeypatch.setenv("MOTES_HOME", "~/other")
    assert resolve_home() == tmp_path / "other"


def test_the_mesh_file_says_where_the_local_mesh_runs(tmp_path: Path) -> None:
    (tmp_path / MESH_FILE).write_text('{"url": "nats://127.0.0.1:4222", "pids": [1]}')

    assert read_mesh_file(tmp_path) == {"url": "nats://127.0.0.1:4222", "pids": [1]}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no mesh is running at .* \\(start one with `motes up`\\)"), ("{oops", "unreadable")],
)
def test_no_mesh_file_means_no_mesh(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / MESH_FILE).write_text(content)

    with pytest.raises(MeshNotRunning, match=message):
        read_mesh_file(tmp_path)
