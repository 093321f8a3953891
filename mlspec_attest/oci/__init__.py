"""Chains attached to models in OCI registries: ``mlspec push``, ``mlspec pull``, ``mlspec verify oci://``.

The model is one OCI artifact (one layer per packaged file); the chain and its VSA are
OCI 1.1 referrers of that artifact's manifest (``subject``), found through the referrers
API or, on registries without it, the referrers tag schema. Media types: layout.py and
docs/storage.md ("OCI registries").
"""
