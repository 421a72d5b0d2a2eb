"""tests/infra as a package (imported as tests.infra.<module>)."""
