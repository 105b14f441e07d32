from __future__ import annotations

from django.shortcuts import render

from studio.views import role_required


@role_required("reviewer", "admin")
def queue(request):
    return render(request, "review/queue.html", {})
