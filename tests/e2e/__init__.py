"""tests/e2e as a package (imported as tests.e2e.<module>)."""
