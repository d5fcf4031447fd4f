"""In-memory benchmarks and synthetic Aave books (issue 8); scripts, not tests."""
