"""What really ran: providers per node (ONNX Runtime), the XNNPACK share (TFLite), integer vs float layers."""

from types import SimpleNamespace

from edgekit.runtime.backends import Backend, OnnxBackend, open_backend
from edgekit.runtime.foreign import input_shapes, signature, synthesize
from edgekit.runtime.residency import fallback, tflite_residency, what_ran


def _feed(backend):
    inputs = signature(backend)
    return synthesize(inputs, input_shapes(inputs, 2, {"image": [2, 3, 16, 16]}))


def test_xnnpack_leaves_cumsum_to_tflite_kernels_and_int8_placement_is_per_op(foreign_models):
    backend = open_backend(foreign_models / "two.int8.tflite", threads=1)
    ran = what_ran(foreign_models / "two.int8.tflite", backend)
    res = ran["residency"]
    assert res["delegate"] == "XNNPACK" and res["not_delegated"] == {"CUMSUM": 1}
    assert res["delegated"] == res["ops"] - 1 and res["partitions"] >= 1 and 0 < res["share"] < 1
    quant = ran["quant"]
    assert quant["integer"]["ops"]["CONV_2D"] == 1 and quant["integer"]["ops"]["FULLY_CONNECTED"] == 1
    assert quant["float"]["ops"] == {"CUMSUM": 1} and ran["fallback"] is None

    float_file = what_ran(foreign_models / "cls.tflite", open_backend(foreign_models / "cls.tflite", threads=1))
    assert float_file["residency"]["not_delegated"] == {} and float_file["quant"] is None

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    bare = Interpreter(model_path=str(foreign_models / "two.int8.tflite"),
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    bare.allocate_tensors()  # the same file with XNNPACK turned off: no partition, every op on TFLite's kernels
    off = tflite_residency(bare)
    assert off["delegate"] is None and off["delegated"] == 0 and off["ops"] == res["ops"]


def test_onnx_nodes_per_provider_and_qdq_placement(foreign_models):
    backend = open_backend(foreign_models / "two.onnx", device="cpu", threads=1)
    ran = what_ran(foreign_models / "two.onnx", backend, _feed(backend), "cpu")
    res = ran["residency"]
    assert res["nodes"] >= 4 and res["providers"] == {"CPUExecutionProvider": res["nodes"]}
    assert "Conv" in res["ops"]["CPUExecutionProvider"] and ran["quant"] is None and ran["fallback"] is None

    int8 = open_backend(foreign_models / "cls.int8.onnx", threads=1)
    ran = what_ran(foreign_models / "cls.int8.onnx", int8, _feed(int8))
    assert ran["quant"]["integer"]["ops"] == {"Conv": 1, "Gemm": 1} and ran["quant"]["float"]["layers"] == 0
    assert any(op.startswith("QLinear") for op in ran["residency"]["ops"]["CPUExecutionProvider"])  # what ran


def test_a_requested_accelerator_that_fell_back_is_flagged():
    def ort(asked, running):  # an ONNX Runtime backend not opened: only what its fallback reads
        backend = OnnxBackend.__new__(OnnxBackend)
        backend.providers, backend.device = asked, "cpu"
        backend.session = SimpleNamespace(get_providers=lambda: running)
        return backend

    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert "the session has only CPUExecutionProvider" in fallback("cuda", ort(cuda, ["CPUExecutionProvider"]), None)
    split = {"nodes": 10, "providers": {"CUDAExecutionProvider": 8, "CPUExecutionProvider": 2},
             "ops": {"CUDAExecutionProvider": {"Conv": 8}, "CPUExecutionProvider": {"Shape": 2}}}
    assert fallback("cuda", ort(cuda, cuda), split) == ("2 of 10 nodes ran on CPUExecutionProvider instead of "
                                                        "CUDAExecutionProvider (Shape)")
    assert fallback("cpu", ort(["CPUExecutionProvider"], ["CPUExecutionProvider"]), None) is None
    on_cpu = Backend()  # any other backend: what it says ran against what was asked
    on_cpu.device = "cpu"
    assert fallback("cuda", on_cpu, None) == "asked for cuda; it ran on cpu"
