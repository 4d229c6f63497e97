"""Where the repository is, for tests that read its files or run its commands."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
"""Vendored files the tests check against (KubeRay's CRD, Kubernetes' NetworkPolicy schema), with their licences."""
