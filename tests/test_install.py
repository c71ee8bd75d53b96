"""
Installing meetrd for real: C{pip install .} into a fresh virtualenv gives
a C{twistd meetr} that works from any directory, and ships the settings and
init files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

from tests.support import REPO


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
                 "meetr-instances"):
        assert (share / "init" / name).is_file(), name
    assert Path(sys.executable) != python
