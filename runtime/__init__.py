"""edgekit.runtime: what ships to the device. numpy, OpenCV and one backend — never torch.

>>> from edgekit.runtime import load
>>> model = load("runs/export/digits-mobileone_s0/model.int8.tflite", threads=2)
>>> model.predict("digit.png")[0]["digit"]["label"]
"""

from edgekit.runtime.backends import ModelFileError
from edgekit.runtime.predictor import Predictor, load
from edgekit.runtime.preprocess import InputError

__all__ = ["InputError", "ModelFileError", "Predictor", "load"]
