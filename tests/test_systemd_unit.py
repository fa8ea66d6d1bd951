"""The systemd unit, sysusers and tmpfiles files: required directives, consistency with the
configuration defaults, and ``systemd-analyze verify`` where available."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from facegate.config.models import SecurityConfig

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "facegate.service"
EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "facegate.example.yaml"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd's syntax: sections, repeatable keys, '#'/';' comments, backslash continuations."""
    sections: Unit = defaultdict(lambda: defaultdict(list))
    section = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert section is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line}"
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def one(unit: Unit, key: str, section: str = "Service") -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def test_service_type_and_lifecycle(unit: Unit) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "ExecStart") == "/opt/facegate/venv/bin/facegate run --config /etc/facegate/facegate.yaml"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "WatchdogSec") == "30"
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "RestartSec") == "5"
    assert one(unit, "RestartPreventExitStatus") == "2"  # configuration errors: see facegate.cli
    assert int(one(unit, "TimeoutStopSec")) > 0
    assert one(unit, "WantedBy", "Install") == "multi-user.target"
    assert "network-online.target" in one(unit, "After", "Unit")


def test_user_directories_and_credentials(unit: Unit) -> None:
    assert one(unit, "User") == "facegate"
    assert one(unit, "SupplementaryGroups") == "video"
    assert one(unit, "StateDirectory") == "facegate"
    assert one(unit, "ConfigurationDirectory") == "facegate"
    credentials = dict(v.split(":", 1) for v in unit["Service"]["LoadCredential"])
    assert credentials == {
        "mqtt_password": "/etc/facegate/credentials/mqtt_password",
        "command_secret": "/etc/facegate/credentials/command_secret",
    }
    # the names the configuration reads by default and documents
    assert SecurityConfig().command_secret_credential in credentials
    assert "!credential mqtt_password" in EXAMPLE.read_text()


def test_sandboxing(unit: Unit) -> None:
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "no",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert one(unit, key) == value, key
    allowed = {v.split()[0]: v.split()[1] for v in unit["Service"]["DeviceAllow"]}
    assert allowed["char-video4linux"] == "rw"  # /dev/video*
    assert allowed["char-media"] == "rw"  # /dev/media*
    assert allowed["char-dma_heap"] == "rw"  # /dev/dma_heap/*
    memory_max = one(unit, "MemoryMax")
    assert memory_max.endswith("M") and 128 <= int(memory_max[:-1]) <= 1024


def test_sysusers_and_tmpfiles() -> None:
    sysusers = [
        line.split()
        for line in (SYSTEMD / "facegate.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sysusers[0][:3] == ["u", "facegate", "-"]
    assert ["m", "facegate", "video"] in sysusers
    tmpfiles = (SYSTEMD / "facegate.tmpfiles.conf").read_text()
    assert "d /etc/facegate/credentials 0700 root root -" in tmpfiles


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart= exists; the venv is not installed here
    text = UNIT.read_text().replace("/opt/facegate/venv/bin/facegate", shutil.which("true") or "/bin/true")

    def verify(unit_text: str) -> tuple[int, list[str]]:
        copy = tmp_path / "facegate.service"
        copy.write_text(unit_text)
        proc = subprocess.run(
            [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60, check=False
        )
        output = (proc.stdout + proc.stderr).splitlines()
        # verify only warns (exit 0) about unknown keys and unparsable values
        return proc.returncode, [line for line in output if "facegate.service" in line or "ignoring" in line.lower()]

    code, problems = verify(text)
    assert code == 0 and not problems, "\n".join(problems)
    # the check itself can fail: a misspelt directive is reported
    _, typo = verify(text.replace("WatchdogSec=30", "WatchdogSecs=30"))
    assert any("WatchdogSecs" in line for line in typo)


def test_parser_keeps_duplicates_and_continuations() -> None:
    parsed = parse_unit("[Service]\n# c\nDeviceAllow=a r\nDeviceAllow=b rw\nExecStart=/bin/x \\\n  --flag\n")
    assert parsed["Service"]["DeviceAllow"] == ["a r", "b rw"]
    assert parsed["Service"]["ExecStart"] == ["/bin/x --flag"]


def test_sysusers_and_tmpfiles_are_accepted_by_systemd(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    tmpfiles = shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers/systemd-tmpfiles are not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nvideo:x:44:\n")
    proc = subprocess.run(
        [sysusers, "--dry-run", f"--root={root}", str(SYSTEMD / "facegate.sysusers.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Creating user 'facegate'" in proc.stderr + proc.stdout
    if os.geteuid() != 0:
        return  # tmpfiles chowns to root
    proc = subprocess.run(
        [tmpfiles, f"--root={root}", "--create", str(SYSTEMD / "facegate.tmpfiles.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    credentials = root / "etc" / "facegate" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
