"""``edgekit device ...``: the machines a file ships to, over SSH (:mod:`edgekit.devices`).

Registered on the main app by :mod:`edgekit.cli`; like it, this imports only typer at import time.
"""

from __future__ import annotations

from typing import Annotated

import typer

device_app = typer.Typer(help="Devices over SSH: set one up (edgekit's runtime in its own venv there), name it, list "
                              "them, clean one. Then --on DEVICE runs check, predict and bench there.",
                         no_args_is_help=True)

Target = Annotated[str, typer.Argument(help="A device name (edgekit device add) or an address: "
                                            "ssh://user@host[:port]\\[/folder] (folder default ~/.edgekit).")]
AcceptNew = Annotated[bool, typer.Option(
    "--accept-new-host-key", help="Accept a host key that is not in ~/.ssh/known_hosts yet (it is saved there and "
                                  "printed with its fingerprint). A key that CHANGED is always refused.")]
Identity = Annotated[str | None, typer.Option("--identity", "-i", help="SSH private key file (default: the SSH agent "
                                                                        "and ~/.ssh/id_*). Passwords are never used.")]


def _say(text: str) -> None:
    from rich.markup import escape

    from edgekit.console import say

    say(escape(text))


@device_app.command(epilog="Examples:\n\n"
                    "  edgekit device setup pi                                  # a name from edgekit device add\n\n"
                    "  edgekit device setup ssh://pi@192.168.1.20 --accept-new-host-key\n\n"
                    "  edgekit device setup ssh://root@127.0.0.1:2222 --offline  # wheels from this machine\n\n"
                    "  edgekit device setup ssh://me@box/opt/edgekit --python /usr/bin/python3.11")
def setup(target: Target,
          offline: Annotated[bool, typer.Option("--offline", help="Download the wheels for the device's platform "
                                                                  "here and copy them: the device needs no network.")]
          = False,
          python: Annotated[str | None, typer.Option(help="The device's Python >= 3.10 (default: python3, then "
                                                          "python3.13 ... python3.10 on its PATH).")] = None,
          accept_new_host_key: AcceptNew = False, identity: Identity = None) -> None:
    """Install edgekit's runtime on a device (its own venv in one folder) and record the machine."""
    from edgekit.devices.setup import setup as run_setup

    run_setup(target, offline=offline, python=python, accept_new_host_key=accept_new_host_key, identity=identity,
              say=_say)


@device_app.command(epilog="Examples:\n\n"
                    "  edgekit device add pi ssh://pi@raspberrypi.local\n\n"
                    "  edgekit device add kiosk ssh://admin@10.0.0.7:2222 -i ~/.ssh/kiosk_ed25519")
def add(name: Annotated[str, typer.Argument(help="The name (letters, digits, '.', '_', '-').")],
        address: Annotated[str, typer.Argument(help="ssh://user@host[:port]\\[/folder]")],
        identity: Identity = None) -> None:
    """Name a device: NAME stands for ADDRESS in every command."""
    from edgekit.devices.address import Registry, parse_address

    registry = Registry()
    registry.add(name, parse_address(address), identity)
    _say(f"{name} = {parse_address(address)}  ({registry.path})")


@device_app.command(epilog="Examples:\n\n  edgekit device remove pi")
def remove(name: Annotated[str, typer.Argument(help="A device name.")]) -> None:
    """Forget a device's name (edgekit device clean removes edgekit from the device itself)."""
    from edgekit.devices.address import Registry

    Registry().remove(name)
    _say(f"removed {name}")


@device_app.command(name="list", epilog="Examples:\n\n  edgekit device list\n\n  edgekit device list --json")
def list_(json_: Annotated[bool, typer.Option("--json", help="The registry as JSON on stdout.")] = False) -> None:
    """The devices: names, addresses and what setup recorded (CPU features, runtime versions, emulated)."""
    import json

    from edgekit.devices.address import Registry
    from edgekit.devices.setup import describe

    registry = Registry()
    if json_:
        typer.echo(json.dumps(registry.data, indent=1))
        return
    names = {e["address"]: n for n, e in registry.data["devices"].items()}
    shown = set()
    for address in [*names, *registry.data["records"]]:
        if address in shown:
            continue
        shown.add(address)
        label = f"{names[address]} ({address})" if address in names else address
        record = registry.data["records"].get(address)
        typer.echo(describe(label, record) + f"\n  set up {record.get('setup_at')}" if record
                   else f"{label}: not set up (edgekit device setup {names.get(address, address)})")
    if not shown:
        typer.echo(f"no devices yet ({registry.path}): edgekit device add NAME ssh://user@host")


@device_app.command(epilog="Examples:\n\n  edgekit device clean pi\n\n  edgekit device clean ssh://root@127.0.0.1:2222")
def clean(target: Target, accept_new_host_key: AcceptNew = False, identity: Identity = None) -> None:
    """Remove edgekit's folder (venv, wheels, files sent) from the device."""
    from edgekit.devices.setup import clean as run_clean

    run_clean(target, accept_new_host_key=accept_new_host_key, identity=identity, say=_say)
