"""The systemd unit: verified and scored by systemd-analyze (which works without systemd running),
plus the evidence behind leaving MemoryDenyWriteExecute= off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edge-dac.service"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # the kernel's MemoryDenyWriteExecute (Linux >= 6.3)


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found: run scripts/setup.sh (installs the systemd package)")
    return tool


@pytest.fixture
def unit_copy(tmp_path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here: verify checks that the
    command exists, and the installed path (/usr/local/bin/edge-dac) does not on a dev machine."""
    fake = tmp_path / "edge-dac"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = UNIT.read_text().replace("/usr/local/bin/edge-dac", str(fake))
    copy = tmp_path / "edge-dac.service"
    copy.write_text(text)
    return copy


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def test_unit_verifies(unit_copy):
    result = subprocess.run(
        [analyze(), "verify", "--man=no", str(unit_copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_check_in_the_docs_works_on_a_fresh_checkout(tmp_path):
    """docs/systemd.md's "Checking the unit" block, run as written from the repository root, passes
    before anything is installed (a plain `systemd-analyze verify systemd/edge-dac.service` does not:
    /usr/local/bin/edge-dac is missing here, which this test also shows)."""
    analyze()
    root = UNIT.parents[1]
    doc = (root / "docs" / "systemd.md").read_text().split("## Checking the unit", 1)[1]
    block = doc.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "systemd-analyze verify" in block
    if not Path("/usr/local/bin/edge-dac").exists():
        plain = subprocess.run([analyze(), "verify", "--man=no", str(UNIT)], capture_output=True, text=True, timeout=60)
        assert plain.returncode != 0 and "/usr/local/bin/edge-dac" in plain.stderr, plain.stderr
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=root, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level" in result.stdout and (tmp_path / "edge-dac.service").is_file()


def test_unit_security_exposure_is_low(unit_copy):
    result = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", "--threshold=25", str(unit_copy)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    score = float(result.stdout.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert score <= 2.5, result.stdout


def test_unit_has_the_promised_settings():
    s = unit_settings()
    assert s["Service.Type"] == ["notify"] and s["Service.WatchdogSec"] and s["Service.Restart"] == ["on-failure"]
    assert s["Unit.StartLimitBurst"] and s["Unit.StartLimitIntervalSec"]
    assert s["Service.DynamicUser"] == ["yes"]
    assert set(s["Service.SupplementaryGroups"][0].split()) == {"audio", "video", "render"}
    for key in ("StateDirectory", "CacheDirectory", "RuntimeDirectory"):
        assert s[f"Service.{key}"] == ["edge-dac"]
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "RestrictAddressFamilies"):
        assert f"Service.{key}" in s
    # Both would break the daemon on real hardware; see the unit's comments and the test below.
    assert "Service.PrivateDevices" not in s and "Service.MemoryDenyWriteExecute" not in s


def test_memory_deny_write_execute_breaks_the_sounddevice_callback():
    """Why the unit leaves MemoryDenyWriteExecute= off: with the kernel's equivalent switched on,
    sounddevice cannot even create its cffi callback. If this starts passing, a newer cffi or
    libffi no longer needs write+execute memory and the setting can be turned on."""
    # In a child process: the switch cannot be turned off again once on.
    code = (
        "import ctypes, sys\n"
        f"if ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0: sys.exit(5)\n"
        "import sounddevice\n"
        "try:\n"
        # exactly how sounddevice wraps every stream callback (needs no audio device)
        "    sounddevice._ffi.callback('PaStreamCallback', error=sounddevice._lib.paAbort)(lambda *a: 0)\n"
        "except MemoryError as e:\n"
        "    print(e); sys.exit(3)\n"
        "except Exception as e:\n"
        "    print('no MemoryError:', type(e).__name__, e); sys.exit(4)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if result.returncode == 5:
        pytest.skip("kernel older than 6.3: no PR_SET_MDWE to emulate MemoryDenyWriteExecute with")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "write+execute" in result.stdout
