"""Reusable Pulumi components of the hybrid GPU cluster (one ComponentResource per module)."""
