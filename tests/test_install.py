"""
Installing meetrd for real: C{pip install .} into a fresh virtualenv gives
a C{twistd meetr} that works from any directory, and ships the settings and
init files; the wheel C{python -m build} makes holds the daemon and nothing
of the development tooling, the tests or the benchmarks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from tests.support import REPO

#: What a copy of the working tree leaves out: version control, the
#: virtualenv, the nodes' homes, caches and earlier build output.
NOT_SOURCE = {".git", ".venv", ".cassandra", ".cassandra-cluster", ".cache",
              ".run", ".hypothesis", ".pytest_cache", "build", "dist"}


def run(*command, cwd):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def test_pipInstall(tmp_path):
    """
    After pip install ., the plugin cache can be regenerated, twistd meetr
    --help works outside the repository, and the data files are in place.
    """
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    source = tmp_path / "src"
    source.mkdir()
    for name in ("meetrd", "twisted", "etc", "init"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__",
                                                      "dropin.cache"))
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    installed = run(str(python), "-m", "pip", "install", "-q", str(source),
                    cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = run(str(python), "-m", "meetrd.plugincache", cwd=elsewhere)
    assert cache.returncode == 0, cache.stderr
    assert "meetr" in cache.stdout
    caches = list(target.glob("lib/python*/site-packages/twisted/plugins/"
                              "dropin.cache"))
    assert caches
    helpText = run(str(target / "bin" / "twistd"), "meetr", "--help",
                   cwd=elsewhere)
    assert helpText.returncode == 0, helpText.stderr
    assert "--config" in helpText.stdout
    share = target / "share" / "meetrd"
    assert (share / "etc/meetr/meetr.yaml").read_text() == \
        (REPO / "etc/meetr/meetr.yaml").read_text()
    for name in ("meetr", "meetr.sysconfig", "meetr@.service",
                 "meetr-instances", "meetr-functions"):
        assert (share / "init" / name).is_file(), name
    assert Path(sys.executable) != python


def sourceTree(target: Path) -> Path:
    """
    Copy the repository's working tree (its tools, tests and benchmarks
    included, the console's vendored files too) to C{target}, without
    version control, the virtualenv, the nodes' homes and build output.
    """
    def ignore(folder, names):
        ignored = {name for name in names
                   if name.endswith(".egg-info") or name == "__pycache__"
                   or name == "dropin.cache"}
        if Path(folder) == REPO:
            ignored |= NOT_SOURCE & set(names)
        return ignored

    shutil.copytree(REPO, target, ignore=ignore, symlinks=True)
    return target


def test_wheelHoldsOnlyTheDaemon(tmp_path):
    """
    C{python -m build --wheel} on the working tree makes a wheel holding
    every module and data file of the C{meetrd} package (the console's
    vendored chart library among them), the twistd dropin, the settings and
    init files, and nothing else: no C{tools/}, C{tests/} or C{bench/}, no
    development node, development settings or vendoring module, no
    C{__init__.py} that would hide Twisted's own C{twisted} package.
    """
    source = sourceTree(tmp_path / "src")
    if not (source / "meetrd" / "console" / "vendor" / "VERSION").is_file():
        vendored = run(sys.executable, "-m", "tools.consolevendor",
                       cwd=source)
        assert vendored.returncode == 0, vendored.stderr[-3000:]
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "build", "--wheel", "--no-isolation",
                "--outdir", str(dist), str(source), cwd=tmp_path)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    [wheel] = dist.glob("meetrd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())

    package = {path.relative_to(source).as_posix()
               for path in (source / "meetrd").rglob("*")
               if path.is_file() and (path.suffix == ".py"
                                      or "console" in path.parts)}
    assert "meetrd/tap.py" in package
    assert package <= names, sorted(package - names)
    for name in ("meetrd/tap.py", "meetrd/openapi.json",
                 "meetrd/promql/engine.py", "meetrd/proto/remote.proto",
                 "twisted/plugins/meetr_plugin.py",
                 "meetrd/console/index.html", "meetrd/console/console.js",
                 "meetrd/console/vendor/uPlot.iife.min.js",
                 "meetrd/console/vendor/uPlot.min.css",
                 "meetrd/console/vendor/uPlot.LICENSE.txt"):
        assert name in names, name

    info = "-".join(wheel.name.split("-")[:2])
    data = f"{info}.data/data/share/meetrd/"
    assert {f"{data}etc/meetr/meetr.yaml", f"{data}init/meetr",
            f"{data}init/meetr@.service"} <= names
    assert {name.split("/")[0] for name in names} == {
        "meetrd", "twisted", f"{info}.dist-info", f"{info}.data"}
    assert [name for name in names if name.startswith("twisted/")] == \
        ["twisted/plugins/meetr_plugin.py"]
    development = [name for name in names
                   if any(word in name for word in
                          ("devnode", "devconfig", "consolevendor",
                           "tools/", "tests/", "bench/"))]
    assert development == []
