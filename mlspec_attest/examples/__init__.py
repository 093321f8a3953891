"""Runnable example pipelines that attest every lifecycle stage through the Python API.

They live inside the package (not only in the repository's ``examples/``) so that
``mlspec demo`` works from any install, editable or not.
"""
