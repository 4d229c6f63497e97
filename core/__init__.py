"""The leaf modules of ocr-translate-serve: errors, languages, options, box merging, text processing,
imaging, settings and the answers' types.

They import no other layer (no Ray, no database), so every layer may import them: `models_registry`,
`service` (the pipeline), `deployments` and `graph.py`.
"""
