"""Targets: one module per artifact format, each with one entry function (as keras/src/export)."""
