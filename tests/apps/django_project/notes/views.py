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


FILE_DATA = b"django file\n" * 100_000  # 1.2 MB


def download(request):
    """A FileResponse (served through wsgi.file_wrapper) of a file made once."""
    import os
    import tempfile

    from django.http import FileResponse

    path = os.path.join(tempfile.gettempdir(), "caddysnake-django-%d.bin" % os.getpid())
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(FILE_DATA)
        os.replace(path + ".tmp", path)
    return FileResponse(open(path, "rb"), as_attachment=True, filename="notes.bin")


def boom(request):
    raise RuntimeError("django-boom-" + request.GET.get("id", "x"))
