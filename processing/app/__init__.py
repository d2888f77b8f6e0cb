"""Composition: the pipeline run, the Dask task and the CLI."""
