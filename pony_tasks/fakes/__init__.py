"""Fake boorus and the deterministic sample corpus they serve: for tests, benchmarks and the demo."""
