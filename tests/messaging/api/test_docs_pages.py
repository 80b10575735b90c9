"""The contract is served: /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI from our own files)."""

import re

import pytest
import yaml
from django.contrib.staticfiles import finders

from messaging.api.urls import urlpatterns

pytestmark = pytest.mark.django_db


def test_the_schema_is_openapi_3_and_lists_every_endpoint(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    documented = set(schema["paths"])
    routed = {"/api/v1/" + re.sub(r"<int:(\w+)>", r"{\1}", str(pattern.pattern)) for pattern in urlpatterns}
    assert documented == routed
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An organization's API key (created by its admins at /api-keys/).",
    }


def test_every_operation_documents_the_error_shape_and_limits(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("400", "401", "403", "404", "429"):
                content = operation["responses"][status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Error"}, (path, method, status)
            assert "Retry-After" in operation["responses"]["429"]["headers"], (path, method)


def test_the_docs_page_loads_swagger_ui_from_our_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "cdn" not in page.lower()
    scripts = re.findall(r'src="/static/([^"]+)"', page)
    assert scripts
    for asset in scripts:
        assert finders.find(asset.split("?")[0]), asset
