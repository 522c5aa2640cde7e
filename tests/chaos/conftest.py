"""The live-chat deployment fixtures (a real server with agents Ann, Bob and Lee) for the fault tests."""

from tests.ws.conftest import backend, deploy, live, sqlite_url, stores  # noqa: F401
