"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of the REST API (built in openapi_spec)."""

from __future__ import annotations

import functools
import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatsvc.web.openapi_spec import build_document


@functools.cache
def document_bytes() -> bytes:
    return json.dumps(build_document(), ensure_ascii=False, indent=1).encode()


async def openapi_json(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


routes = [Route("/api/v1/openapi.json", openapi_json, methods=["GET"])]
