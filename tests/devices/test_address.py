"""Device addresses and names (the registry), the device's own requirements and pip tags: no SSH needed."""

from __future__ import annotations

import json

import pytest

from edgekit.devices.address import Address, Registry, parse_address
from edgekit.errors import ConfigError


def test_addresses_parse_with_their_folder_and_print_back():
    a = parse_address("ssh://pi@raspberrypi.local")
    assert a == Address(host="raspberrypi.local", user="pi", port=22, folder="~/.edgekit")
    assert str(a) == "ssh://pi@raspberrypi.local" and a.known_hosts_name == "raspberrypi.local"
    b = parse_address("root@127.0.0.1:2222/opt/edgekit")
    assert (b.user, b.host, b.port, b.folder) == ("root", "127.0.0.1", 2222, "/opt/edgekit")
    assert str(b) == "ssh://root@127.0.0.1:2222/opt/edgekit" and b.known_hosts_name == "[127.0.0.1]:2222"
    assert parse_address("ssh://me@[::1]:22/~/edge").folder == "~/edge"
    for bad, why in [("http://pi", "only ssh://"), ("ssh://pi:secret@host", "password"), ("ssh://@", "no host"),
                     ("ssh://pi@host/", None), ("ssh://pi@host/opt", "below a top-level folder"),
                     ("ssh://pi@host:notaport", "not an SSH address")]:
        if why is None:
            assert parse_address(bad).folder == "~/.edgekit"
            continue
        with pytest.raises(ConfigError, match=why):
            parse_address(bad)


def test_names_stand_for_addresses_and_survive_a_reload(tmp_path):
    path = tmp_path / "devices.json"
    reg = Registry(path)
    reg.add("pi", parse_address("ssh://pi@10.0.0.5"), identity="~/.ssh/pi")
    label, address, identity = Registry(path).resolve("pi")
    assert (label, str(address), identity) == ("pi (ssh://pi@10.0.0.5)", "ssh://pi@10.0.0.5", "~/.ssh/pi")
    # the address itself works too, and finds the name's identity
    assert Registry(path).resolve("ssh://pi@10.0.0.5")[2] == "~/.ssh/pi"
    with pytest.raises(ConfigError, match="no device named 'kiosk' .*edgekit device add kiosk"):
        reg.resolve("kiosk")
    with pytest.raises(ConfigError, match="use letters"):
        reg.add("my pi", parse_address("ssh://pi@h"))
    reg.set_record(address, {"arch": "aarch64"})
    assert json.loads(path.read_text())["records"] == {"ssh://pi@10.0.0.5": {"arch": "aarch64"}}
    reg.remove("pi")
    assert Registry(path).data["devices"] == {}
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable device registry"):
        Registry(path)


AARCH64 = {"implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
           "platform_machine": "aarch64", "platform_release": "6.1", "platform_system": "Linux",
           "platform_version": "#1", "python_full_version": "3.11.2", "platform_python_implementation": "CPython",
           "python_version": "3.11", "sys_platform": "linux"}


def test_the_runtime_requirements_are_resolved_for_the_device_not_this_machine():
    """A wheel whose markers say: no TFLite on Intel macOS. The device's marker environment decides."""
    import zipfile

    from edgekit.devices.wheels import runtime_requirements

    def wheel(tmp):
        path = tmp / "edgekit-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("edgekit-0.1.0.dist-info/METADATA", "\n".join([
                "Name: edgekit", "Requires-Dist: numpy>=1.24",
                'Requires-Dist: opencv-python<5,>=4.10; extra == "runtime"',
                'Requires-Dist: ai-edge-litert>=2.3; (sys_platform != "darwin" or platform_machine != "x86_64") and '
                'extra == "runtime"',
                'Requires-Dist: torch>=2; extra == "train"', 'Requires-Dist: edgekit[runtime]; extra == "train"']))
        return path

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        w = wheel(Path(tmp))
        assert runtime_requirements(w, AARCH64, headless=False) == ["numpy>=1.24", "opencv-python<5,>=4.10",
                                                                     "ai-edge-litert>=2.3"]
        assert runtime_requirements(w, AARCH64, headless=True)[1] == "opencv-python-headless<5,>=4.10"
        intel_mac = {**AARCH64, "platform_machine": "x86_64", "platform_system": "Darwin", "sys_platform": "darwin"}
        assert runtime_requirements(w, intel_mac, headless=False) == ["numpy>=1.24", "opencv-python<5,>=4.10"]


def test_pip_debug_tags_are_read_in_order():
    from edgekit.devices.wheels import parse_tags, platform_key

    text = ("pip version: pip 23.0.1\nCompatible tags: 3\n  cp311-cp311-manylinux_2_36_aarch64\n"
            "  cp311-abi3-manylinux_2_17_aarch64\n  py3-none-any\n")
    tags = parse_tags(text)
    assert tags == ["cp311-cp311-manylinux_2_36_aarch64", "cp311-abi3-manylinux_2_17_aarch64", "py3-none-any"]
    assert platform_key(AARCH64, tags) == "manylinux_2_36_aarch64-cp311"
