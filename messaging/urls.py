from django.urls import path

from messaging import views, webhooks

app_name = "messaging"

urlpatterns = [
    path("webhooks/<str:provider>/<str:instance_name>/", webhooks.provider_webhook, name="webhook"),
    path("events/", views.events_catch_up, name="events"),
    path("messages/<int:message_id>/media/", views.message_media, name="message-media"),
    path("numbers/<int:number_id>/qr/", views.number_qr, name="number-qr"),
    path("stats/live/", views.live_statistics, name="live-statistics"),
]
