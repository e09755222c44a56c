"""Celery workers that run jaxport conversions (see workers.app for the worker's contract)."""
