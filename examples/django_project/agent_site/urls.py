from django.urls import path

from . import views

urlpatterns = [
    path("threads/<path:thread_id>/messages", views.add_message),
    path("threads/<path:thread_id>", views.show),
]
