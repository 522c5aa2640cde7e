"""schemathesis against the app's own OpenAPI document, served by a real server: generated requests, as an
anonymous caller and as an admin, never get a server error, and every response has a documented status
code, content type and body schema. Bounded: a few derandomized examples per operation."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.security.conftest import Site

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance]
# CHATSVC_FUZZ_EXAMPLES=200 for a deeper run by hand.
EXAMPLES = int(os.environ.get("CHATSVC_FUZZ_EXAMPLES", "3"))
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
# Without a token every operation but two answers 401 whatever the request: one example each shows it.
ANONYMOUS = settings(BOUNDED, max_examples=max(1, EXAMPLES // 3))


@pytest.fixture(scope="package")
def api_schema(site: Site) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{site.http}/api/v1/openapi.json")
    loaded.config.phases.coverage.enabled = False  # hundreds of boundary cases per operation: over the budget
    # Registering webhooks would make the server POST to whatever URLs were generated.
    return loaded.exclude(operation_id="createWebhook")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@ANONYMOUS
def test_as_an_anonymous_caller(case: schemathesis.Case, site: Site) -> None:
    case.call_and_validate(base_url=site.http, checks=CHECKS)


@schema.parametrize()
@BOUNDED
def test_as_an_admin(case: schemathesis.Case, site: Site) -> None:
    case.call_and_validate(base_url=site.http, headers=site.bearer("admin"), checks=CHECKS)
