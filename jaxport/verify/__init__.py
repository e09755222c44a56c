"""Verification: run each artifact in its own runtime and compare with the JAX output."""
