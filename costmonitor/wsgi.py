"""WSGI entry point (gunicorn costmonitor.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "costmonitor.settings")
application = get_wsgi_application()
