"""Bulk runs on Ray Data: a folder of pages through the server's stage code and backends, to Parquet
and (optionally) into the server's store, so the extension's md5-only calls hit afterwards.
`ocr-translate-bulk --help` (or `python -m bulk`) describes the command."""
