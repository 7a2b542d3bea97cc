"""Exporters: ONNX (from PyTorch), MindIR (from MindSpore), Ascend 310 converter config, MindSpore Lite."""
