from django.urls import path

from crm import number_views, views

app_name = "crm"

urlpatterns = [
    path("", views.home, name="home"),
    path("organization/switch/", views.organization_switch, name="organization-switch"),
    # Number management (organization admins): crm/number_views.py
    path("numbers/", number_views.number_list, name="number-list"),
    path("numbers/add/", number_views.number_add, name="number-add"),
    path("numbers/<int:number_id>/", number_views.number_detail, name="number-detail"),
    path("numbers/<int:number_id>/connect/", number_views.number_connect, name="number-connect"),
    path("numbers/<int:number_id>/logout/", number_views.number_logout, name="number-logout"),
    path("numbers/<int:number_id>/delete/", number_views.number_delete, name="number-delete"),
]
