"""The test suite as a package: modules import their helpers as tests.<folder>.<module> (pytest rootdir imports)."""
