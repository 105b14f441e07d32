from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def images_generations(request):
    return JsonResponse({"error": {"message": "not built yet", "type": "server_error", "param": None, "code": None}}, status=500)
