"""Every installation starts with one channel: the application log (the reference always logs alerts)."""

from django.db import migrations


def create_log_channel(apps, schema_editor):
    AlertChannel = apps.get_model("alerts", "AlertChannel")
    if not AlertChannel.objects.filter(name="logging").exists():
        AlertChannel.objects.create(name="logging", kind="log", config={"log_level": ""}, secrets={})


def remove_log_channel(apps, schema_editor):
    apps.get_model("alerts", "AlertChannel").objects.filter(name="logging", kind="log").delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(create_log_channel, remove_log_channel)]
