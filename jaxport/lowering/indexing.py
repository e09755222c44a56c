"""gather, scatter, dynamic_slice."""
