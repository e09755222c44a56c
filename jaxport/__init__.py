"""jaxport."""
