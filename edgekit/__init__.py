"""edgekit: distill, compress, export, verify, benchmark and run vision models on edge devices.

Importing ``edgekit`` is cheap: heavy libraries (torch, timm, onnxruntime...) are imported by the
subpackages that need them, never here.
"""

__version__ = "0.1.0"
