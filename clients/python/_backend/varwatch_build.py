"""The PEP 517 build backend of the varwatch package, in the tree.

Why not setuptools: pip builds a package in an isolated environment into
which it first installs the backend from an index, so ``pip install
./clients/python`` with setuptools as the backend fails on a machine
without PyPI, and Debian's pip refuses the workaround outside a venv. This
backend needs nothing but the standard library (Python 3.11 or later, for
tomllib; on 3.10 it asks for tomli): pip installs no build requirement at
all, so the plain command works offline, with or without build isolation.

It builds what a pure-Python package needs and nothing more: a
``py3-none-any`` wheel (the ``varwatch`` package, its ``py.typed`` and
the stubs' ``.pyi`` files, and the ``.dist-info``), an sdist (the source
tree pip needs to build that wheel again), and an editable wheel (a
``.pth`` pointing at the tree). Metadata comes from ``pyproject.toml``'s
``[project]`` table; the version comes from one place,
``__version__`` in ``varwatch/__init__.py``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pathlib
import re
import sys
import tarfile
import time
import zipfile
from typing import Any, Dict, Iterator, List, Optional, Tuple

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = "varwatch"
# Files of the package that go into the wheel, by suffix.
PACKAGE_SUFFIXES = (".py", ".pyi", ".typed")
# What the sdist holds besides the package: enough to build the wheel.
SDIST_EXTRA = ("pyproject.toml", "README.md", "_backend/varwatch_build.py")


def _pyproject() -> Dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as e:  # pragma: no cover - 3.10 without tomli
            raise RuntimeError("building varwatch needs Python 3.11 or later, or the tomli package") from e
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def version() -> str:
    """``__version__`` of varwatch/__init__.py, read without importing it
    (importing needs grpcio, which building does not)."""
    text = (ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if m is None:
        raise RuntimeError(f"no __version__ = \"...\" line in {PACKAGE}/__init__.py")
    return m.group(1)


def _name_version() -> Tuple[str, str]:
    return _pyproject()["project"]["name"], version()


def _metadata() -> str:
    """Core metadata 2.1 (METADATA in the wheel, PKG-INFO in the sdist)."""
    project = _pyproject()["project"]
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version()}",
    ]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    for c in project.get("classifiers", []):
        lines.append(f"Classifier: {c}")
    for dep in project.get("dependencies", []):
        lines.append(f"Requires-Dist: {dep}")
    for extra, deps in sorted(project.get("optional-dependencies", {}).items()):
        lines.append(f"Provides-Extra: {extra}")
        for dep in deps:
            lines.append(f'Requires-Dist: {dep}; extra == "{extra}"')
    body = ""
    readme = project.get("readme")
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        body = (ROOT / readme).read_text(encoding="utf-8")
    return "\n".join(lines) + "\n\n" + body


def _package_files() -> Iterator[pathlib.Path]:
    for path in sorted((ROOT / PACKAGE).rglob("*")):
        if path.is_file() and path.suffix in PACKAGE_SUFFIXES and "__pycache__" not in path.parts:
            yield path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


# SOURCE_DATE_EPOCH makes archives reproducible; zip cannot go below 1980.
def _mtime() -> int:
    return max(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())), 315532800)


def _write_wheel(wheel_directory: str, files: List[Tuple[str, bytes]]) -> str:
    name, ver = _name_version()
    dist_info = f"{name}-{ver}.dist-info"
    files = files + [
        (f"{dist_info}/METADATA", _metadata().encode("utf-8")),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: varwatch_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode()),
    ]
    record = "\n".join([_record_line(n, d) for n, d in files] + [f"{dist_info}/RECORD,,"]) + "\n"
    files.append((f"{dist_info}/RECORD", record.encode()))
    filename = f"{name}-{ver}-py3-none-any.whl"
    stamp = time.gmtime(_mtime())[:6]
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files:
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return filename


# ---- PEP 517 hooks ----

def _build_requires() -> List[str]:
    # Python 3.11 reads pyproject.toml with tomllib; 3.10 needs tomli, the
    # only case in which building asks an index for anything.
    return ["tomli"] if sys.version_info < (3, 11) else []


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return _build_requires()


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return _build_requires()


def get_requires_for_build_editable(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return _build_requires()


def build_wheel(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None,
                metadata_directory: Optional[str] = None) -> str:
    files = [(p.relative_to(ROOT).as_posix(), p.read_bytes()) for p in _package_files()]
    return _write_wheel(wheel_directory, files)


def build_editable(wheel_directory: str, config_settings: Optional[Dict[str, Any]] = None,
                   metadata_directory: Optional[str] = None) -> str:
    name, _ = _name_version()
    return _write_wheel(wheel_directory, [(f"__editable__.{name}.pth", f"{ROOT}\n".encode())])


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    name, ver = _name_version()
    base = f"{name}-{ver}"
    paths = [ROOT / p for p in SDIST_EXTRA] + list(_package_files())
    filename = f"{base}.tar.gz"
    mtime = _mtime()

    def add(tf: tarfile.TarFile, arcname: str, data: bytes) -> None:
        info = tarfile.TarInfo(f"{base}/{arcname}")
        info.size, info.mtime, info.mode = len(data), mtime, 0o644
        tf.addfile(info, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for p in paths:
            add(tf, p.relative_to(ROOT).as_posix(), p.read_bytes())
        add(tf, "PKG-INFO", _metadata().encode("utf-8"))
    return filename
