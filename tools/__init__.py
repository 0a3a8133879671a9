"""Developer tooling: offline plan, benchmarks and the mock runtime they share with the tests."""
