"""The machine record: which CPUs saturate onnxruntime's u8s8 kernels, read from features, never assumed."""

from edgekit.runtime.machine import cpu_features, u8s8_saturates


def test_u8s8_saturates_only_on_x86_without_vnni_or_amx():
    assert u8s8_saturates(["AVX2"], "x86_64")
    assert u8s8_saturates(["AVX2", "AVX-512"], "x86_64")  # AVX-512 without VNNI: VPMADDUBSW too
    assert not u8s8_saturates(["AVX2", "AVX-512", "AVX-512 VNNI"], "x86_64")
    assert not u8s8_saturates(["AVX2", "AVX-VNNI"], "x86_64")
    assert not u8s8_saturates(["AVX2", "AMX", "AMX-INT8"], "x86_64")
    assert not u8s8_saturates([], "aarch64")  # ARM kernels widen or use dot-product: no int16 saturation


def test_int8_onnx_card_says_which_cpu_chose_the_weight_range(exported):
    from edgekit.runtime.metadata import read_card

    q = read_card(exported.out_dir / "model.int8.onnx").provenance["quantization"]
    machine = cpu_features()
    saturates = u8s8_saturates(machine["features"])
    assert q["weight_type"]["type"] == ("uint8" if saturates else "int8")
    assert machine["cpu"] in q["weight_type"]["why"]
    assert q["weights"].startswith(q["weight_type"]["type"])


def test_arm_features_come_from_the_auxiliary_vector():
    """AT_HWCAP / AT_HWCAP2 bits (what qemu-user gives an arm64 process; /proc/cpuinfo there is the host's)."""
    import struct

    from edgekit.runtime.machine import auxv_flags

    # the emulated Debian's values (LD_SHOW_AUXV=1 /bin/true): AT_HWCAP ecfffffb, AT_HWCAP2 0x7f877fff
    raw = struct.pack("LLLLLLLL", 6, 4096, 16, 0xECFFFFFB, 26, 0x7F877FFF, 0, 0)
    assert auxv_flags(raw) == {"asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16"}
    a72 = struct.pack("LLLL", 16, 0x8FF, 0, 0)  # a Cortex-A72 (Raspberry Pi 4): fp, asimd, ..., no dot-product
    assert auxv_flags(a72) == set()
    a76 = struct.pack("LLLLLL", 16, (1 << 10) | (1 << 20), 26, 0, 0, 0)  # Cortex-A76 (Pi 5): FP16 + dot-product
    assert auxv_flags(a76) == {"asimdhp", "asimddp"}
    n2 = struct.pack("LLLLLL", 16, 1 << 20, 26, (1 << 13) | (1 << 14), 0, 0)  # dot-product, I8MM and BF16 only
    assert auxv_flags(n2) == {"asimddp", "i8mm", "bf16"}
    assert auxv_flags(struct.pack("LL", 0, 0)) is None  # no AT_HWCAP: not readable


def test_emulation_is_seen_from_the_kernels_cpu_description():
    from edgekit.runtime.machine import emulated

    x86 = {"vendor_id": "AuthenticAMD", "flags": "fpu avx2", "model name": "AMD EPYC"}
    arm = {"features": "fp asimd asimddp", "cpu implementer": "0x41", "cpu architecture": "8"}
    assert "x86-64 CPU (AMD EPYC)" in emulated(x86, "aarch64")
    assert emulated(arm, "aarch64") is None and emulated(x86, "x86_64") is None
    assert emulated(arm, "x86_64") is not None
    assert emulated({}, "aarch64") is None  # nothing readable: not claimed


def test_the_machine_record_is_json_from_a_torch_free_process():
    import json
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import runpy; "
            "runpy.run_module('edgekit.runtime.machine', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    record = json.loads(proc.stdout)
    assert record["arch"] and record["python"] and record["usable_cores"] >= 1 and record["emulated"] is False
    assert record["packages"]["numpy"] and record["cpu_features"] == cpu_features()["features"]
