"""tests/unit as a package (imported as tests.unit.<module>)."""
