"""Where a device is: ``ssh://user@host:port/folder`` addresses, and the names that stand for them.

``edgekit device add pi ssh://pi@kiosk.local`` stores the name in a small registry file in the user's config
folder (``$XDG_CONFIG_HOME/edgekit/devices.json``, written atomically); every command takes a name or the address
itself. The registry also keeps what ``edgekit device setup`` read about each device (its machine record).

The address's path is edgekit's folder on the device (default ``~/.edgekit``: the venv, the wheels, the files sent
over); ``edgekit device clean`` removes it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgekit.errors import ConfigError

DEFAULT_FOLDER = "~/.edgekit"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Address:
    """An SSH login and edgekit's folder on that machine."""

    host: str
    user: str | None = None
    port: int = 22
    folder: str = DEFAULT_FOLDER

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.user + '@' if self.user else ''}{host}{'' if self.port == 22 else f':{self.port}'}"
        return f"ssh://{where}{'' if self.folder == DEFAULT_FOLDER else self.folder}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names this host in ``known_hosts``: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_address(text: str) -> Address:
    """``ssh://user@host:port/folder`` (or ``user@host``) -> :class:`Address`; anything else is a one-line error."""
    raw = text.strip()
    if not raw.startswith("ssh://"):
        if "://" in raw:
            raise ConfigError(f"'{text}': only ssh:// addresses are supported (ssh://user@host[:port])")
        raw = "ssh://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port or 22
    except ValueError as exc:
        raise ConfigError(f"'{text}' is not an SSH address ({exc}): use ssh://user@host[:port]") from None
    if not parts.hostname:
        raise ConfigError(f"'{text}' names no host: use ssh://user@host[:port]")
    if parts.password is not None:
        raise ConfigError(f"'{text}' contains a password: edgekit logs in with SSH keys only, and never stores one")
    folder = parts.path.rstrip("/") or DEFAULT_FOLDER
    if folder.startswith("/~"):
        folder = folder[1:]
    if folder in ("/", "~") or folder.count("/") == 1 and folder.startswith("/"):  # a top-level folder: too broad
        raise ConfigError(f"'{text}': edgekit's folder on the device must be below a top-level folder "
                          f"(e.g. {DEFAULT_FOLDER} or /opt/edgekit), got '{folder}'")
    return Address(host=parts.hostname, user=parts.username, port=port, folder=folder)


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "edgekit"


def cache_dir() -> Path:
    """``EDGEKIT_CACHE``, else ``$XDG_CACHE_HOME/edgekit`` (``~/.cache/edgekit``)."""
    if os.environ.get("EDGEKIT_CACHE"):
        return Path(os.environ["EDGEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"


class Registry:
    """``devices.json``: ``{"devices": {name: {"address", "identity"}}, "records": {address: machine record}}``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "devices.json"
        self.data: dict[str, Any] = {"devices": {}, "records": {}}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self.path} is not a readable device registry ({exc}): fix or remove it") from None
            self.data["devices"].update(loaded.get("devices") or {})
            self.data["records"].update(loaded.get("records") or {})

    def save(self) -> Path:
        from edgekit.atomic import write_json

        return write_json(self.path, self.data)

    def add(self, name: str, address: Address, identity: str | None = None) -> None:
        if not NAME.match(name):
            raise ConfigError(f"device name '{name}': use letters, digits, '.', '_' or '-' (up to 64)")
        self.data["devices"][name] = {"address": str(address), "identity": identity}
        self.save()

    def remove(self, name: str) -> None:
        if name not in self.data["devices"]:
            raise ConfigError(f"no device named '{name}' (edgekit device list shows them)")
        del self.data["devices"][name]
        self.save()

    def resolve(self, target: str) -> tuple[str, Address, str | None]:
        """A name or an address -> ``(label for messages, address, identity file or None)``."""
        entry = self.data["devices"].get(target)
        if entry is not None:
            address = parse_address(entry["address"])
            return f"{target} ({address})", address, entry.get("identity")
        if NAME.match(target) and "." not in target and "@" not in target:
            names = ", ".join(sorted(self.data["devices"])) or "none yet"
            raise ConfigError(f"no device named '{target}' (known: {names}); add it with: edgekit device add "
                              f"{target} ssh://user@host")
        address = parse_address(target)
        name = next((n for n, e in self.data["devices"].items() if e["address"] == str(address)), None)
        identity = self.data["devices"][name].get("identity") if name else None
        return (f"{name} ({address})" if name else str(address)), address, identity

    def record(self, address: Address) -> dict[str, Any] | None:
        return self.data["records"].get(str(address))

    def set_record(self, address: Address, record: dict[str, Any] | None) -> None:
        if record is None:
            self.data["records"].pop(str(address), None)
        else:
            self.data["records"][str(address)] = record
        self.save()
