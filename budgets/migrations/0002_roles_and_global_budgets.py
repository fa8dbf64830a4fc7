"""Creates the `researcher` and `admin` groups with the reference's permissions, and the
organisation daily and monthly budgets (the reference's global limits)."""

from decimal import Decimal

from django.conf import settings
from django.db import migrations

ROLE_PERMISSIONS = {
    "researcher": ["read_budgets", "track_costs"],
    "admin": ["read_budgets", "track_costs", "modify_budgets", "manage_alerts"],
}
PERMISSION_NAMES = {
    "read_budgets": "Can read budgets, spend and analytics",
    "track_costs": "Can record API costs and reserve budget",
    "modify_budgets": "Can create and change budgets and breakers",
    "manage_alerts": "Can manage alerts and alert channels",
}


def create_roles_and_budgets(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    Budget = apps.get_model("budgets", "Budget")
    team_type, _ = ContentType.objects.get_or_create(app_label="budgets", model="team")
    permissions = {
        codename: Permission.objects.get_or_create(codename=codename, content_type=team_type,
                                                   defaults={"name": name})[0]
        for codename, name in PERMISSION_NAMES.items()
    }
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*(permissions[c] for c in codenames))
    for period, limit in (("daily", settings.DEFAULT_DAILY_BUDGET), ("monthly", settings.DEFAULT_MONTHLY_BUDGET)):
        Budget.objects.get_or_create(
            is_global_default=True, period=period,
            defaults={"name": f"Organisation {period}", "scope": "organization", "limit_usd": Decimal(limit),
                      "enforcement": "hard"},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("budgets", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles_and_budgets, migrations.RunPython.noop)]
