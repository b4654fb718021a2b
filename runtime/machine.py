"""The machine a file runs on, read rather than assumed: CPU model and the instruction-set features that decide
which kernels run (x86: AVX2, AVX-512 VNNI, AVX-512 BF16, AMX; ARM: dot-product, I8MM, FP16, BF16, SVE).

No torch, no heavy import: the runtime reads it on a device, bench records it beside a recommendation, and export
reads it where a file's numerics depend on this machine's kernels (:func:`u8s8_saturates`).
``python -m edgekit.runtime.machine`` prints :func:`machine_record` as JSON: what ``edgekit device setup`` records
about a device over SSH.

On 64-bit ARM Linux the features come from the kernel's auxiliary vector (``AT_HWCAP``/``AT_HWCAP2`` in
``/proc/self/auxv``), which is also right under qemu-user, where ``/proc/cpuinfo`` describes the host's CPU.
"""

from __future__ import annotations

import os
import platform
import struct
import subprocess
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag (x86 "flags", ARM "Features") -> the name users know
X86_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
             "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16", "amx_tile": "AMX", "amx_int8": "AMX-INT8",
             "amx_bf16": "AMX-BF16"}
ARM_FLAGS = {"asimddp": "ARM dot-product", "i8mm": "ARM I8MM", "bf16": "ARM BF16", "asimdhp": "ARM FP16",
             "sve": "SVE", "sve2": "SVE2"}
# arch/arm64/include/uapi/asm/hwcap.h: AT_HWCAP (16) and AT_HWCAP2 (26) bits -> the /proc/cpuinfo flag names
AT_HWCAP, AT_HWCAP2 = 16, 26
ARM_HWCAP = {1 << 10: "asimdhp", 1 << 20: "asimddp", 1 << 22: "sve"}
ARM_HWCAP2 = {1 << 1: "sve2", 1 << 13: "i8mm", 1 << 14: "bf16"}
ARM_MACHINES = ("aarch64", "arm64")
MAC_FLAGS = {"hw.optional.arm.FEAT_DotProd": "ARM dot-product", "hw.optional.arm.FEAT_I8MM": "ARM I8MM",
             "hw.optional.arm.FEAT_BF16": "ARM BF16", "hw.optional.arm.FEAT_FP16": "ARM FP16"}


def auxv_flags(raw: bytes | None = None) -> set[str] | None:
    """The ARM feature flags (``asimddp``, ``i8mm``...) of ``AT_HWCAP``/``AT_HWCAP2`` in ``/proc/self/auxv`` (or in
    the given bytes: native-endian pairs of unsigned longs); None when it cannot be read."""
    if raw is None:
        try:
            raw = Path("/proc/self/auxv").read_bytes()
        except OSError:
            return None
    size = struct.calcsize("L")
    values = dict(struct.iter_unpack("LL", raw[: len(raw) // (2 * size) * 2 * size]))
    if AT_HWCAP not in values:
        return None
    hwcap, hwcap2 = values[AT_HWCAP], values.get(AT_HWCAP2, 0)
    return ({flag for bit, flag in ARM_HWCAP.items() if hwcap & bit}
            | {flag for bit, flag in ARM_HWCAP2.items() if hwcap2 & bit})


def cpu_features(cpuinfo: str | None = None, sysctl: str | None = None) -> dict[str, Any]:
    """``{"cpu": model name, "features": [names], "source": where they were read}`` of this machine (or of the
    given ``/proc/cpuinfo`` / ``sysctl`` text, for tests)."""
    if cpuinfo is None and sysctl is None and platform.system() == "Linux" and platform.machine() in ARM_MACHINES:
        flags = auxv_flags()
        if flags is not None:
            return {"cpu": arm_cpu_name(), "features": [label for flag, label in ARM_FLAGS.items() if flag in flags],
                    "source": "AT_HWCAP"}
    if cpuinfo is None and sysctl is None:
        info = Path("/proc/cpuinfo")
        if info.exists():
            cpuinfo = info.read_text(errors="replace")
        elif platform.system() == "Darwin":
            try:
                sysctl = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                sysctl = None
    if cpuinfo is not None:
        fields: dict[str, str] = {}
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        flags = set((fields.get("flags") or fields.get("features") or "").split())
        table = X86_FLAGS if "flags" in fields else ARM_FLAGS
        name = (fields.get("model name") or fields.get("cpu model") or fields.get("model") or fields.get("hardware")
                or platform.machine())
        return {"cpu": name, "features": [label for flag, label in table.items() if flag in flags],
                "source": "/proc/cpuinfo"}
    if sysctl is not None:
        values = dict(ln.split(":", 1) for ln in sysctl.splitlines() if ":" in ln)
        name = values.get("machdep.cpu.brand_string", platform.machine()).strip()
        return {"cpu": name, "features": [label for key, label in MAC_FLAGS.items() if values.get(key, "").strip()
                                          == "1"], "source": "sysctl"}
    return {"cpu": platform.processor() or platform.machine(), "features": [], "source": "not readable here"}


# onnxruntime's x86 u8s8 kernels without VNNI (and without AMX) multiply with VPMADDUBSW, which adds pairs of
# u8*s8 products into a saturating int16: with full-range 8-bit weights the sums clip. VNNI and AMX accumulate in
# int32; ARM's kernels (dot-product or widening multiplies) do not saturate either.
NO_SATURATION = ("AVX-512 VNNI", "AVX-VNNI", "AMX-INT8")


def u8s8_saturates(features: list[str] | None = None, arch: str | None = None) -> bool:
    """Whether onnxruntime's u8 activation x s8 weight kernels saturate on this machine (or on one with the
    given ``arch`` and feature names, as :func:`cpu_features` reports them)."""
    arch = (arch or platform.machine()).lower()
    features = cpu_features()["features"] if features is None else features
    return arch in ("x86_64", "amd64") and not any(f in features for f in NO_SATURATION)


def arm_cpu_name() -> str:
    """The ARM board or CPU as ``/proc/cpuinfo`` names it (``Raspberry Pi 4 Model B Rev 1.4``); under emulation
    (``/proc/cpuinfo`` is the host's), the emulator and the host's CPU."""
    emulation = emulated()
    info = _cpuinfo_fields()
    if emulation:  # qemu-user emulates the CPU model QEMU_CPU names (its default: "max", every feature it has)
        model = os.environ.get("QEMU_CPU") or "max"
        return f"qemu-user {platform.machine()} ({model}) on {info.get('model name') or 'an x86-64 CPU'}"
    return info.get("model") or info.get("hardware") or info.get("model name") or platform.machine()


def _cpuinfo_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def emulated(cpuinfo: dict[str, str] | None = None, machine: str | None = None) -> str | None:
    """How this process is seen to run under emulation (qemu-user), or None: the kernel's ``/proc/cpuinfo``
    describes a CPU of another architecture than the one the process runs as."""
    machine = (machine or platform.machine()).lower()
    if cpuinfo is None and platform.system() == "Darwin" and _sysctl("sysctl.proc_translated") == "1":
        return "Rosetta 2: an x86-64 process on Apple silicon"
    fields = _cpuinfo_fields() if cpuinfo is None else cpuinfo
    if not fields:
        return None
    x86_info = "flags" in fields and "vendor_id" in fields
    arm_info = "features" in fields and ("cpu implementer" in fields or "cpu architecture" in fields)
    if machine in ARM_MACHINES and x86_info:
        return f"/proc/cpuinfo describes an x86-64 CPU ({fields.get('model name', '?')}), the process runs as {machine}"
    if machine in ("x86_64", "amd64") and arm_info:
        return f"/proc/cpuinfo describes an ARM CPU, the process runs as {machine}"
    return None


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


RUNTIME_PACKAGES = ("edgekit", "numpy", "opencv-python", "opencv-python-headless", "onnxruntime", "ai-edge-litert",
                    "openvino", "coremltools")


def machine_record() -> dict[str, Any]:
    """What a file's numbers and speed depend on, of this machine: CPU and its features, cores, memory, OS, C
    library, Python, the runtime packages' versions, and whether it is emulated."""
    from importlib import metadata

    features = cpu_features()
    versions = {}
    for name in RUNTIME_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        usable = os.cpu_count() or 1
    libc, libc_version = platform.libc_ver()
    emulation = emulated()
    return {"arch": platform.machine(), "system": platform.system(), "os": _os_name(), "kernel": platform.release(),
            "libc": f"{libc} {libc_version}".strip() or None, "python": platform.python_version(),
            "cpu": features["cpu"], "cpu_features": features["features"], "features_source": features["source"],
            "cores": os.cpu_count(), "usable_cores": usable, "memory_mb": _memory_mb(),
            "emulated": emulation is not None, "emulation": emulation, "packages": versions}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    if platform.system() == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    return platform.platform()


def _memory_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def main() -> int:
    import json
    import sys

    sys.stdout.write(json.dumps(machine_record()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
