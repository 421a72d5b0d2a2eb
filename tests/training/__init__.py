"""tests/training as a package (imported as tests.training.<module>)."""
