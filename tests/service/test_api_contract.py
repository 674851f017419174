"""What the OpenAPI schema promises, checked against the running service: every numeric parameter is bounded (out
of range is 422, never 500), the error answers are documented in the real error shape, and 405 says what is
allowed."""

from __future__ import annotations

import pytest

from tests.service.conftest import RunningService

pytestmark = pytest.mark.service
ERROR_REF = "#/components/schemas/ErrorResponse"
PATH_VALUES = {"assignment_id": "csce636-hw3"}
"""A real value for a path parameter where it matters; the others get a name of nothing (their 404 is fine)."""


def _types(schema: dict) -> set[str]:
    found = {schema["type"]} if "type" in schema else set()
    for option in schema.get("anyOf", []):
        found |= _types(option)
    return found


def test_no_numeric_parameter_of_any_get_route_answers_5xx_at_its_extremes(service: RunningService) -> None:
    client = service.user("una", role="instructor")
    schema = client.get("/openapi.json").json()
    tried: set[tuple[str, str]] = set()
    failures: list[str] = []
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        parameters = operations["get"].get("parameters", [])
        for parameter in parameters:
            if parameter["in"] not in ("query", "path") or not _types(parameter["schema"]) & {"integer", "number"}:
                continue
            for value in (2**63, -1):
                values = {
                    p["name"]: PATH_VALUES.get(p["name"], "no-such-thing") for p in parameters if p["in"] == "path"
                }
                query = {}
                if parameter["in"] == "path":
                    values[parameter["name"]] = str(value)
                else:
                    query[parameter["name"]] = str(value)
                response = client.get(path.format(**values), params=query)
                tried.add((path, parameter["name"]))
                if response.status_code >= 500:
                    failures.append(f"GET {path} {parameter['name']}={value}: {response.status_code} {response.text}")
    assert not failures
    assert {("/api/v1/submissions", "offset"), ("/api/v1/assignments/{assignment_id}/gradebook", "limit")} <= tried


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("get", "/api/v1/me", {401, 429}),
        ("get", "/api/v1/submissions", {401, 403, 422, 429}),
        ("get", "/api/v1/submissions/{submission_id}", {401, 404, 422, 429}),
        ("post", "/api/v1/assignments/{assignment_id}/submissions", {400, 401, 403, 404, 408, 413, 422, 429}),
        ("get", "/api/v1/assignments/{assignment_id}/gradebook", {401, 403, 404, 422, 429}),
        ("post", "/api/v1/assignments/{assignment_id}/regrades", {400, 401, 403, 404, 408, 413, 422, 429}),
        ("post", "/api/v1/users", {401, 403, 413, 422, 429}),
    ],
)
def test_error_answers_are_documented_in_the_error_shape(
    service: RunningService, method: str, path: str, codes: set[int]
) -> None:
    schema = service.user("una", role="instructor").get("/openapi.json").json()
    responses = schema["paths"][path][method]["responses"]
    for code in codes:
        assert responses[str(code)]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, code
    if 429 in codes:
        assert "Retry-After" in responses["429"]["headers"]


def test_errors_are_not_documented_where_they_cannot_happen(service: RunningService) -> None:
    schema = service.user("una", role="instructor").get("/openapi.json").json()
    paths = schema["paths"]
    assert not {"401", "422", "429"} & set(paths["/api/v1/health"]["get"]["responses"])
    assert not {"400", "408", "413"} & set(paths["/api/v1/submissions"]["get"]["responses"])
    assert "HTTPValidationError" not in str(schema)  # FastAPI's own 422 shape is not what the API answers


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/api/v1/health", "GET"), ("PUT", "/api/v1/assignments/csce636-hw3/submissions", "POST")],
)
def test_a_method_not_allowed_answers_405_with_allow(
    service: RunningService, method: str, path: str, allowed: str
) -> None:
    response = service.user("una", role="instructor").request(method, path)
    assert response.status_code == 405
    assert allowed in {method.strip() for method in response.headers["allow"].split(",")}
    assert response.json()["error"]["code"] == "http_error"
