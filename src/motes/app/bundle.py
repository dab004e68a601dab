"""Bundles: an app's source as one deterministic zip, whose sha256 is the app's version.

What goes in: the app's module; if the module sits in a package, that whole top-level
package; otherwise the sibling modules and packages it imports. Plus ``motes.json``, the
manifest (app name, module, declared requirements). The zip is byte-for-byte reproducible
(sorted entries, fixed timestamps and modes), so the same source gives the same digest.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadApp
from .app import App

__all__ = ["Bundle", "build_bundle", "extract_bundle", "find_app", "load_app_file"]

MANIFEST = "motes.json"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
_SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    "node_modules",
}
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Bundle:
    data: bytes
    digest: str
    module: str


def _package_root(path: Path) -> tuple[Path, str]:
    """The directory to put on sys.path, and the module's dotted name under it."""
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    if parts[-1] == "__init__":
        parts.pop()
    return folder, ".".join(parts)


def _local_imports(file: Path, root: Path) -> set[Path]:
    """Sibling modules and packages under ``root`` that ``file`` imports."""
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except SyntaxError as exc:
        raise BadApp(f"{file}: {exc}") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    found: set[Path] = set()
    for name in names:
        if (root / f"{name}.py").is_file():
            found.add(root / f"{name}.py")
        elif (root / name / "__init__.py").is_file():
            found.add(root / name)
    return found


def _collect(file: Path) -> tuple[Path, str, list[Path]]:
    root, module = _package_root(file)
    if "." in module or file.name == "__init__.py":
        top = root / module.split(".")[0]
        return root, module, _walk(top)
    files: set[Path] = set()
    todo = [file]
    while todo:
        current = todo.pop()
        if current in files:
            continue
        files.add(current)
        if current.suffix != ".py":
            continue
        for dep in _local_imports(current, root):
            # A package's modules are scanned too: what they import must travel with them.
            todo += _walk(dep) if dep.is_dir() else [dep]
    return root, module, sorted(files)


def _walk(top: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.endswith((".pyc", ".pyo"))]
    return out


def build_bundle(app: App) -> Bundle:
    """Bundle the source of ``app`` (which must have been loaded from a file)."""
    if not app.file:
        raise BadApp(f"app {app.name} was not defined in a file, so it cannot be bundled")
    file = Path(app.file).resolve()
    root, module, files = _collect(file)
    manifest: dict[str, object] = {
        "format": 1,
        "app": app.name,
        "module": module,
        "requirements": app.requirements,
    }
    wasm = _wasm_motes(app)
    if wasm:
        manifest["wasm"] = wasm
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            data = path.read_bytes()
            total += len(data)
            if total > MAX_BUNDLE_BYTES:
                raise BadApp(
                    f"app {app.name}: bundle over {MAX_BUNDLE_BYTES >> 20} MiB; keep data out "
                    "of the app's package and read it through the store"
                )
            _write(zf, path.relative_to(root).as_posix(), data)
        _write(zf, MANIFEST, json.dumps(manifest, sort_keys=True).encode())
    data = buf.getvalue()
    return Bundle(data, "sha256:" + hashlib.sha256(data).hexdigest(), module)


def _wasm_motes(app: App) -> dict[str, dict[str, object]]:
    """The wasm motes' limits and views: the node reads them from the bundle (covered by
    its digest), so a worker knows before loading anything that it must not import the
    module natively."""
    return {
        name: {"fuel": s.fuel, "memory_mb": s.memory_mb, "files": s.files, "writable": s.writable}
        for name, s in ((n, d.spec) for n, d in app.motes.items())
        if s.sandbox == "wasm"
    }


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def extract_bundle(data: bytes, digest: str, dest: Path) -> Path:
    """Check ``data`` against ``digest`` and unpack it into ``dest`` (atomically, once)."""
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise BadApp(f"bundle {digest[:19]} does not match its digest; refusing to load it")
    if (dest / MANIFEST).exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            if name.startswith("/") or ".." in Path(name).parts:
                raise BadApp(f"bundle {digest[:19]} has an unsafe path {name!r}")
        zf.extractall(tmp)
    try:
        tmp.rename(dest)
    except OSError:
        if not (dest / MANIFEST).exists():
            raise
    return dest


def find_app(module: object, name: str | None = None) -> App:
    """The App declared in a loaded module (the one named ``name`` if several)."""
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if name is not None:
        apps = [a for a in apps if a.name == name]
    if len(apps) == 1:
        return apps[0]
    where = getattr(module, "__file__", module)
    if not apps:
        raise BadApp(f"{where} declares no motes.App" + (f" named {name!r}" if name else ""))
    raise BadApp(f"{where} declares several apps ({[a.name for a in apps]}); deploy one by name")


def load_app_file(path: str | os.PathLike[str], name: str | None = None) -> App:
    """Import an app's file the way a worker will (same module name) and return its App."""
    file = Path(path).resolve()
    if file.is_dir():
        file = file / "app.py"
    if not file.is_file():
        raise BadApp(f"no such app file: {path}")
    root, module = _package_root(file)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        mod = sys.modules.get(module) or importlib.import_module(module)
    except Exception as exc:
        raise BadApp(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() != file:  # type: ignore[arg-type]
        raise BadApp(f"module name {module!r} of {file} is already taken by {mod.__file__}")
    return find_app(mod, name)
