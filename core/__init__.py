"""Serve-free logic of ocr-translate-serve: store, box merging, text processing, languages, pipeline.

Everything here is importable and testable without Ray; `deployments/` wraps it for Serve.
"""
