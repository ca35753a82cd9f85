"""The install recipe of README "Install", run as written: a fresh venv on
the system Python with its site packages (Debian's python3-grpcio and
python3-protobuf), ``pip install`` of this directory with no index at all,
then an import and one watch against a real server, from outside the
source tree and without PYTHONPATH, so that what runs is the installed
copy. Also: the in-tree backend builds an sdist and a wheel, and the sdist
alone is enough to install from.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tarfile
import zipfile

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 300

# One watch with the installed package: set a value once the snapshot is
# complete, and wait for the change.
WATCH_SCRIPT = r"""
import sys
import varwatch

print("imported", varwatch.__version__, varwatch.__file__)
with varwatch.Client(sys.argv[1], timeout=10.0) as client:
    with client.create_session() as session:
        session.register("x", "integer", 1)
        with session.watch(["x"], include_initial_values=True) as watch:
            for update in watch:
                if update.type == varwatch.UpdateType.INITIAL_VALUES_COMPLETE:
                    session.set("x", 2, source="install-test")
                elif update.type == varwatch.UpdateType.VALUE_CHANGE:
                    print("watched", update.name, update.old_value, "->", update.value, "rev", update.revision)
                    break
"""


def clean_env() -> dict:
    """The environment without anything that points Python at the tree
    or pip at an index."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the tree from the backend
    return env


def run(args: list, cwd: pathlib.Path) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def make_venv(tmp_path: pathlib.Path) -> pathlib.Path:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp_path)
    return venv


def check_installed_watch(venv: pathlib.Path, tmp_path: pathlib.Path, target: str) -> None:
    out = run([venv / "bin" / "python", "-c", WATCH_SCRIPT, target], cwd=tmp_path)
    lines = out.splitlines()
    site = str(venv / "lib")
    assert lines[0].startswith("imported ") and site in lines[0], f"not the installed copy: {out}"
    assert lines[1].startswith("watched x 1 -> 2 rev "), out


def test_pip_install_offline_in_venv(tmp_path: pathlib.Path, server) -> None:
    venv = make_venv(tmp_path)
    # As README "Install" prints it, plus --no-index: no index may be needed.
    run([venv / "bin" / "pip", "install", "--no-index", "--no-cache-dir", PKG], cwd=tmp_path)
    check_installed_watch(venv, tmp_path, server.target)


def test_sdist_and_wheel(tmp_path: pathlib.Path, server) -> None:
    sys.path.insert(0, str(PKG / "_backend"))
    try:
        import varwatch_build
    finally:
        sys.path.pop(0)
    import varwatch

    assert varwatch_build.version() == varwatch.__version__
    dist = tmp_path / "dist"
    dist.mkdir()
    sdist = dist / varwatch_build.build_sdist(str(dist))
    wheel = dist / varwatch_build.build_wheel(str(dist))
    version = varwatch.__version__
    assert sdist.name == f"varwatch-{version}.tar.gz"
    assert wheel.name == f"varwatch-{version}-py3-none-any.whl"

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"varwatch-{version}.dist-info/METADATA").decode()
    for want in ("varwatch/__init__.py", "varwatch/py.typed", "varwatch/_proto/varwatch/v1/bridge_pb2.py",
                 "varwatch/_proto/varwatch/v1/bridge_pb2.pyi", f"varwatch-{version}.dist-info/RECORD"):
        assert want in names, f"wheel lacks {want}"
    for want in (f"Version: {version}\n", "Requires-Dist: grpcio>=1.51\n", "Requires-Dist: protobuf>=4.21\n",
                 'Requires-Dist: numpy; extra == "numpy"\n', "Requires-Python: >=3.10\n"):
        assert want in metadata, f"METADATA lacks {want!r}"
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
    for want in ("pyproject.toml", "PKG-INFO", "_backend/varwatch_build.py", "varwatch/__init__.py", "README.md"):
        assert f"varwatch-{version}/{want}" in names, f"sdist lacks {want}"

    # The sdist alone builds and installs (pip runs the backend it carries).
    venv = make_venv(tmp_path)
    run([venv / "bin" / "pip", "install", "--no-index", "--no-cache-dir", sdist], cwd=tmp_path)
    check_installed_watch(venv, tmp_path, server.target)
