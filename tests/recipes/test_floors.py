"""The coverage matrix's floors: whose failure a low-precision cell is (stand-in, LiteRT, or unexplained)."""

import math

from edgekit.recipes.coverage_report import floor_lines
from edgekit.recipes.floors import input_floors, judge_floors, pt2e_reference

GATES = {"fp16": 30.0, "int8": 10.0}


def _row(floors, **cells):
    return {"floors": floors, "cells": {c: {"passed": v >= GATES["int8" if c.endswith("int8") else "fp16"],
                                            "sqnr_db": v, "owner": "numeric", "reason": f"SQNR {v} dB misses"}
                                        for c, v in cells.items()}}


def test_a_cell_below_a_floor_the_stand_in_sets_is_the_stand_ins():
    row = _row({"int8_input_db": 5.0, "fp16_db": 24.0, "tflite_pt2e_db": 4.0},
               **{"onnx int8": 3.0, "onnx fp16": 11.0, "tflite int8": 2.0})
    judge_floors(row, GATES)
    c = row["cells"]
    assert c["onnx int8"]["owner"] == "stand-in" and "gives 5.0 dB" in c["onnx int8"]["reason"]
    assert c["onnx int8"]["near_floor"] and "further" not in c["onnx int8"]["reason"]
    assert c["onnx fp16"]["owner"] == "stand-in" and "a further 13.0 dB below that floor" in c["onnx fp16"]["reason"]
    assert c["tflite int8"]["owner"] == "stand-in" and c["tflite int8"]["pt2e_db"] == 4.0  # pt2e misses too


def test_a_tflite_file_far_below_its_own_pt2e_graph_is_litert_s():
    row = _row({"int8_input_db": 40.0, "fp16_db": 50.0, "tflite_pt2e_db": 14.8},
               **{"tflite int8": -4.7, "onnx int8": 7.0, "onnx fp16": 45.0})
    judge_floors(row, GATES)
    c = row["cells"]
    assert c["tflite int8"]["owner"].startswith("upstream (LiteRT") and "loses 19.5 dB" in c["tflite int8"]["reason"]
    assert c["onnx int8"]["owner"] == "numeric" and not c["onnx int8"]["near_floor"]  # unexplained: stays numeric
    assert c["onnx fp16"]["passed"] and c["onnx fp16"]["owner"] == "numeric"  # a pass is never re-labelled
    text = "\n".join(floor_lines([row], list(c)))
    assert "numeric 1, upstream 1" in text and "FP16 0 of 1, INT8 0 of 2" in text


def test_an_fp32_file_of_a_stand_in_that_amplifies_rounding_is_the_stand_ins():
    def fp32(rel):
        return {"passed": rel <= 1e-4, "max_rel": rel, "owner": "numeric", "reason": f"relative error {rel} misses"}

    chaotic = {"floors": {"fp32_rel": 1.6e-4}, "cells": {"onnx fp32": fp32(3e-4), "tflite fp32": fp32(2e-5)}}
    judge_floors(chaotic, {**GATES, "fp32": 1e-4})
    c = chaotic["cells"]
    assert c["onnx fp32"]["owner"] == "stand-in" and "moves by 0.00016 (relative)" in c["onnx fp32"]["reason"]
    assert c["tflite fp32"]["passed"] and c["tflite fp32"]["floor_rel"] == 1.6e-4
    calm = {"floors": {"fp32_rel": 3e-6}, "cells": {"onnx fp32": fp32(3e-4)}}
    judge_floors(calm, {**GATES, "fp32": 1e-4})
    assert calm["cells"]["onnx fp32"]["owner"] == "numeric"  # the model is calm: the file is wrong


def test_floors_of_a_trained_model(trained_run):
    from edgekit.train.trained import load_trained

    trained = load_trained(trained_run.run_dir / "best.pt")
    floors = input_floors(trained, n_images=16)
    assert all(math.isfinite(v) or v == math.inf for v in floors.values())
    assert floors["fp16_db"] > 40 and floors["int8_input_db"] > 10  # a trained model does not amplify noise
    assert floors["fp32_rel"] < 1e-5
    assert 0 < pt2e_reference(trained, calib_images=16, n_images=16) < floors["int8_input_db"] + 20
