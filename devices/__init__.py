"""edgekit.devices: the machines a file ships to, reached over SSH from the host.

``edgekit device setup ssh://user@host`` installs edgekit's runtime on a device (its own venv, in one folder),
records the machine; ``--on DEVICE`` runs ``check``, ``predict`` and ``bench`` there. The host side lives here
(registry, transport, setup, running commands remotely); the device runs only what ``edgekit[runtime]`` installs.
"""
