"""Shared core of conversation-events: domain rules, persistence and messaging contracts.

This package imports no web, broker or Kubernetes framework (see the import-linter contracts
in pyproject.toml); the services under ``services/`` wire it to FastAPI, pika and Kubernetes.
"""
