"""Inference: a finished run directory -> scores -> decisions -> predictions.

loaded.py    `LoadedRun`: a run's parts once loaded, whichever engine scores it
loading.py   a run loaded for scoring with torch (`load_run`), optional int8
onnx_run.py  an ONNX export scored with ONNX Runtime (what running an export needs)
scoring.py   batched, length-sorted scoring (training's validation, `eval`, `predict` and `serve` share it)
predict.py   `mlcls predict`: streaming JSONL / CSV output, resumable
"""
