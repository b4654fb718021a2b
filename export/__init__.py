"""edgekit.export: one module per target (ONNX, TFLite, CoreML), the model card embedded in each
file, and parity verification through edgekit.runtime."""
