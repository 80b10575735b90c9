from django.urls import path

from crm import api_key_views, views

app_name = "crm"

urlpatterns = [
    path("", views.home, name="home"),
    path("organization/switch/", views.organization_switch, name="organization-switch"),
    path("api-keys/", api_key_views.api_keys, name="api-keys"),
    path("api-keys/<int:api_key_id>/revoke/", api_key_views.api_key_revoke_view, name="api-key-revoke"),
]
