"""OpenAPI: the two API-key schemes, and every response body wrapped in the envelope."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

_META = {
    "type": "object",
    "properties": {
        "timestamp": {"type": "number", "example": 1691337600.123},
        "request_id": {"type": "string", "example": "req_0f2c…"},
        "version": {"type": "string", "example": "1.0.0"},
    },
    "required": ["timestamp", "request_id", "version"],
}
_ERROR = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": [
                    "BUDGET_EXCEEDED", "CIRCUIT_BREAKER_OPEN", "INVALID_PARAMETERS", "AUTHENTICATION_FAILED",
                    "RATE_LIMIT_EXCEEDED", "DATABASE_ERROR", "ALERT_DELIVERY_FAILED", "CONFIGURATION_ERROR",
                    "PERMISSION_DENIED", "NOT_FOUND", "METHOD_NOT_ALLOWED", "INTERNAL_ERROR"]},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
                "retry_after": {"type": "number", "nullable": True},
            },
            "required": ["code", "message"],
        },
        "meta": {"$ref": "#/components/schemas/EnvelopeMeta"},
    },
    "required": ["status", "error", "meta"],
}
_ERROR_STATUSES = {"400": "Invalid parameters", "401": "Authentication failed", "403": "Permission denied",
                   "429": "Rate limit exceeded", "500": "Internal error"}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "costmonitor.api.authentication.ApiKeyAuthentication"
    name = ["BearerApiKey", "HeaderApiKey"]

    def get_security_requirement(self, auto_schema):
        # Either header will do: two requirements (OR), not one requirement naming both (AND).
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <api key>"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]


def wrap_responses_in_envelope(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["EnvelopeMeta"] = _META
    schemas["ErrorEnvelope"] = _ERROR
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path, methods in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, response in operation["responses"].items():
                content = response.get("content", {})
                for media, body in content.items():
                    if media != "application/json" or not code.startswith("2"):
                        continue
                    body["schema"] = {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string", "enum": ["success"]},
                            "data": body.get("schema", {}),
                            "meta": {"$ref": "#/components/schemas/EnvelopeMeta"},
                        },
                        "required": ["status", "data", "meta"],
                    }
            for code, description in _ERROR_STATUSES.items():
                operation["responses"].setdefault(code, {"description": description, "content": error_ref})
    return result
