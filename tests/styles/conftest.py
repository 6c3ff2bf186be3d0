from tests.embed.conftest import tiny_weights  # noqa: F401 - the seeded random-init model, shared with embed tests
