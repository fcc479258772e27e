from django.http import HttpResponse, JsonResponse
from django.urls import path

from chanproj import consumers


def health(request):
    return HttpResponse("channels ok")


def events(request):
    return JsonResponse({"events": list(consumers.EVENTS)})


urlpatterns = [path("health/", health), path("events/", events)]
