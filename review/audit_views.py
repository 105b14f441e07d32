from __future__ import annotations

from django.shortcuts import render

from studio.views import role_required


@role_required("admin")
def dashboard(request):
    return render(request, "review/audit/dashboard.html", {})
