"""Bundles: which files an app ships, reproducible digests, and safe unpacking."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import sys
import textwrap
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from motes import App
from motes.app import build_bundle, extract_bundle, find_app, load_app_file
from motes.app import bundle as bundle_module
from motes.errors import BadApp

APP = """
    import motes
    {imports}

    app = motes.App("demo", requirements=["rich"])

    @app.mote
    def work(x: int) -> int:
        return x
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder; whatever loading apps adds to sys.path and sys.modules is undone."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    importlib.invalidate_caches()
    project = tmp_path / "project"
    project.mkdir()
    yield project
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def app_source(*imports: str) -> str:
    return APP.format(imports="\n    ".join(imports))


def names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.namelist()


def read(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(name)


# --- loading ---------------------------------------------------------------------------


def test_an_app_file_loads_under_the_module_name_a_worker_will_use(root: Path) -> None:
    write(root, {"app.py": app_source()})

    app = load_app_file(root / "app.py")

    assert (app.name, app.module, app.file) == ("demo", "app", str(root / "app.py"))
    assert [s.name for s in app.specs()] == ["work"]
    assert load_app_file(root).name == "demo"  # a folder means its app.py


def test_a_missing_app_file_is_a_bad_app(root: Path) -> None:
    with pytest.raises(BadApp, match="no such app file"):
        load_app_file(root / "nope.py")


def test_an_app_that_fails_to_import_says_why(root: Path) -> None:
    write(root, {"app.py": "import motes\n1 / 0\n"})

    with pytest.raises(BadApp, match=r"importing .*app\.py failed: ZeroDivisionError"):
        load_app_file(root / "app.py")


def test_two_app_files_with_the_same_module_name_are_told_apart(root: Path) -> None:
    write(root, {"one/app.py": app_source(), "two/app.py": app_source()})
    load_app_file(root / "one" / "app.py")

    with pytest.raises(BadApp, match=r"module name 'app' of .* is already taken"):
        load_app_file(root / "two" / "app.py")


def _module(**apps: App) -> types.ModuleType:
    module = types.ModuleType("m")
    module.__file__ = "/somewhere/m.py"
    vars(module).update(apps)
    return module


def test_find_app_picks_the_only_app() -> None:
    only = App("one")

    assert find_app(_module(app=only, other=object())) is only


def test_find_app_picks_by_name_among_several() -> None:
    one, two = App("one"), App("two")
    module = _module(a=one, b=two)

    assert find_app(module, "two") is two
    with pytest.raises(BadApp, match=r"declares several apps \(\['one', 'two'\]\)"):
        find_app(module)
    with pytest.raises(BadApp, match=r"declares no motes\.App named 'three'"):
        find_app(module, "three")


def test_find_app_in_a_module_without_apps() -> None:
    with pytest.raises(BadApp, match=r"/somewhere/m\.py declares no motes\.App$"):
        find_app(_module())


# --- what goes in ----------------------------------------------------------------------


def test_a_bundle_holds_the_app_the_siblings_it_imports_and_a_manifest(root: Path) -> None:
    write(
        root,
        {
            "app.py": app_source("import helpers", "from tools.text import shout"),
            "helpers.py": "import util\n",  # imported by an import: followed
            "util.py": "",
            "tools/__init__.py": "",
            "tools/text.py": "def shout(s): return s.upper()\n",
            "tools/data/words.txt": "hello\n",
            "tools/__pycache__/text.cpython-311.pyc": "junk",
            "unrelated.py": "",
            "notes.txt": "",
        },
    )

    bundle = build_bundle(load_app_file(root / "app.py"))

    assert names(bundle.data) == [
        "app.py",
        "helpers.py",
        "tools/__init__.py",
        "tools/data/words.txt",
        "tools/text.py",
        "util.py",
        "motes.json",
    ]
    assert json.loads(read(bundle.data, "motes.json")) == {
        "app": "demo",
        "format": 1,
        "module": "app",
        "requirements": ["rich"],
    }
    assert bundle.module == "app"


def test_an_app_inside_a_package_ships_the_whole_package(root: Path) -> None:
    write(
        root,
        {
            "shop/__init__.py": "",
            "shop/app.py": app_source("from . import prices"),
            "shop/prices.py": "",
            "shop/sub/__init__.py": "",
            "shop/sub/deep.py": "",
            "shop/.hidden/secret.py": "",
            "outside.py": "",
        },
    )

    bundle = build_bundle(load_app_file(root / "shop" / "app.py"))

    assert bundle.module == "shop.app"
    assert names(bundle.data) == [
        "shop/__init__.py",
        "shop/app.py",
        "shop/prices.py",
        "shop/sub/__init__.py",
        "shop/sub/deep.py",
        "motes.json",
    ]


def test_the_same_source_gives_the_same_digest(root: Path) -> None:
    write(root, {"app.py": app_source("import helpers"), "helpers.py": "X = 1\n"})
    app = load_app_file(root / "app.py")

    first, second = build_bundle(app), build_bundle(app)

    assert first.data == second.data
    assert first.digest == second.digest == "sha256:" + hashlib.sha256(first.data).hexdigest()


@pytest.mark.parametrize(
    ("changed", "text", "same"),
    [
        ("helpers.py", "X = 2\n", False),
        ("app.py", app_source("import helpers") + "    # a comment\n", False),
        ("unrelated.py", "Y = 3\n", True),
    ],
)
def test_the_digest_changes_exactly_when_shipped_source_changes(
    root: Path, changed: str, text: str, same: bool
) -> None:
    write(root, {"app.py": app_source("import helpers"), "helpers.py": "X = 1\n"})
    app = load_app_file(root / "app.py")
    before = build_bundle(app).digest

    write(root, {changed: text})

    assert (build_bundle(app).digest == before) == same


def test_an_app_not_defined_in_a_file_cannot_be_bundled() -> None:
    namespace: dict = {"__name__": "interactive", "App": App}
    exec("app = App('repl')", namespace)

    with pytest.raises(BadApp, match="app repl was not defined in a file"):
        build_bundle(namespace["app"])


def test_an_oversize_bundle_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(root, {"app.py": app_source()})
    app = load_app_file(root / "app.py")
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 10)

    with pytest.raises(BadApp, match="keep data out of the app's package"):
        build_bundle(app)


# --- unpacking -------------------------------------------------------------------------


def test_a_bundle_unpacks_once(root: Path, tmp_path: Path) -> None:
    write(root, {"app.py": app_source("import helpers"), "helpers.py": "X = 1\n"})
    bundle = build_bundle(load_app_file(root / "app.py"))
    dest = tmp_path / "bundles" / "demo"
    dest.parent.mkdir()

    assert extract_bundle(bundle.data, bundle.digest, dest) == dest
    assert (dest / "helpers.py").read_text() == "X = 1\n"
    assert json.loads((dest / "motes.json").read_text())["module"] == "app"
    assert extract_bundle(bundle.data, bundle.digest, dest) == dest  # already there: kept
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo"]


def test_a_bundle_that_does_not_match_its_digest_is_refused(root: Path, tmp_path: Path) -> None:
    write(root, {"app.py": app_source()})
    bundle = build_bundle(load_app_file(root / "app.py"))
    dest = tmp_path / "demo"

    with pytest.raises(BadApp, match="does not match its digest; refusing to load it"):
        extract_bundle(bundle.data + b"\0", bundle.digest, dest)
    assert not dest.exists()


def _zip(*entries: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in entries:
            zf.writestr(name, "print('pwned')\n")
    return buf.getvalue()


@pytest.mark.parametrize("evil", ["../escape.py", "/etc/motes-evil", "ok/../../escape.py"])
def test_a_bundle_with_an_unsafe_path_is_refused(tmp_path: Path, evil: str) -> None:
    data = _zip("app.py", evil, "motes.json")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    dest = tmp_path / "in" / "demo"
    dest.parent.mkdir()

    with pytest.raises(BadApp, match="has an unsafe path"):
        extract_bundle(data, digest, dest)
    assert list(tmp_path.rglob("*.py")) == []
    assert list(dest.parent.iterdir()) == []


# --- bugs ------------------------------------------------------------------------------


def test_a_module_imported_by_an_imported_package_is_shipped(root: Path) -> None:
    write(
        root,
        {
            "app.py": app_source("import tools"),
            "tools/__init__.py": "import util\n",
            "util.py": "",
        },
    )

    bundle = build_bundle(load_app_file(root / "app.py"))

    assert "util.py" in names(bundle.data)
