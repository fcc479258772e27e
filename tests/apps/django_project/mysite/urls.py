from django.contrib import admin
from django.urls import path

from notes import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("notes/", views.notes, name="notes"),
    path("info/", views.info, name="info"),
    path("boom/", views.boom, name="boom"),
    path("download/", views.download, name="download"),
]
