"""Adapters to the outside world: sources, storage, the Dask cluster, the writer and publisher."""
