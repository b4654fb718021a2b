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
