"""The machine a file runs on, read rather than assumed: CPU model and the instruction-set features that decide
which kernels run (x86: AVX2, AVX-512 VNNI, AVX-512 BF16, AMX; ARM: dot-product, I8MM, FP16, BF16, SVE).

No torch, no heavy import: the runtime reads it on a device, bench records it beside a recommendation, and export
reads it where a file's numerics depend on this machine's kernels (:func:`u8s8_saturates`).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag (x86 "flags", ARM "Features") -> the name users know
X86_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
             "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16", "amx_tile": "AMX", "amx_int8": "AMX-INT8",
             "amx_bf16": "AMX-BF16"}
ARM_FLAGS = {"asimddp": "ARM dot-product", "i8mm": "ARM I8MM", "bf16": "ARM BF16", "asimdhp": "ARM FP16",
             "sve": "SVE", "sve2": "SVE2"}
MAC_FLAGS = {"hw.optional.arm.FEAT_DotProd": "ARM dot-product", "hw.optional.arm.FEAT_I8MM": "ARM I8MM",
             "hw.optional.arm.FEAT_BF16": "ARM BF16", "hw.optional.arm.FEAT_FP16": "ARM FP16"}


def cpu_features(cpuinfo: str | None = None, sysctl: str | None = None) -> dict[str, Any]:
    """``{"cpu": model name, "features": [names], "source": where they were read}`` of this machine (or of the
    given ``/proc/cpuinfo`` / ``sysctl`` text, for tests)."""
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
        name = fields.get("model name") or fields.get("cpu model") or fields.get("hardware") or platform.machine()
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
