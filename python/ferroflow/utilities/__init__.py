"""Helpers mirroring `prefect.utilities`, so their import paths port unchanged."""
