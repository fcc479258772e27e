from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from .models import Note


@csrf_exempt
def notes(request):
    if request.method == "POST":
        note = Note.objects.create(text=request.POST["text"])
        return JsonResponse({"id": note.pk, "text": note.text}, status=201)
    return JsonResponse({"notes": [{"id": n.pk, "text": n.text} for n in Note.objects.order_by("pk")]})


def info(request):
    return JsonResponse({
        "path": request.path,
        "path_info": request.path_info,
        "script_name": request.META.get("SCRIPT_NAME"),
        "notes_url": reverse("notes"),
        "absolute": request.build_absolute_uri(reverse("notes")),
        "host": request.get_host(),
    })


def boom(request):
    raise RuntimeError("django-boom-" + request.GET.get("id", "x"))
