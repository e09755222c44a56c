"""The jaxport HTTP service (FastAPI): a thin layer over `jaxport.jobs` and `jaxport.storage`."""
