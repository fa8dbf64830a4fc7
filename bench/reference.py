"""The issue's yardstick, served by the bench's gunicorn only: one plain ORM insert per request.

Issue 3 puts the single-event track target next to "a plain ORM insert measures about 30 % of a
trivial endpoint here". This view is that insert (no authentication, no validation, no counters, no
rollups, no envelope), so every `make bench` measures the premise on the same server in the same run.
The bench's server uses bench.settings, whose URLconf is the project's with this route appended
(last, so no other path resolves any differently). Never part of the product.
"""

from decimal import Decimal

from django.http import JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from costmonitor.urls import urlpatterns as project_urlpatterns
from tracking.models import UsageRecord

ORM_INSERT_PATH = "/bench/orm-insert"
ORM_INSERT_NAME = "bench_orm_insert"  # its records are deleted after measuring: they are in no counter
_OWNER: dict[str, int] = {}


@csrf_exempt
def orm_insert(request):
    if not _OWNER:
        from django.contrib.auth import get_user_model

        admin = get_user_model().objects.get(username="bench-admin")
        _OWNER.update(user_id=admin.pk, team_id=admin.teams.values_list("pk", flat=True)[0])
    now = timezone.now()
    record = UsageRecord.objects.create(**_OWNER, operation_name=ORM_INSERT_NAME, operation_type="llm_call",
                                        model_name="gpt-4o-mini", cost_usd=Decimal("0.0021"), total_tokens=420,
                                        occurred_at=now, recorded_at=now)
    return JsonResponse({"id": record.pk}, status=201)


urlpatterns = [*project_urlpatterns, path(ORM_INSERT_PATH.lstrip("/"), orm_insert)]
