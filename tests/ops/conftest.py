from tests.ws.conftest import backend, deploy, live, sqlite_url, stores  # noqa: F401 - shared fixtures
