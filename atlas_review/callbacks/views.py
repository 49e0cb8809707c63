from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def auth(request):
    return JsonResponse({"message": "callbacks are not enabled yet"}, status=503)


callback = callback_v1 = auth
