"""Settings for the test suite: the project's settings with test-friendly environment defaults.

DATABASE_URL comes from the environment (CI points it at PostgreSQL); the default is SQLite.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("ALERTS_ALLOW_PRIVATE_URLS", "true")
os.environ.setdefault("ALLOWED_HOSTS", "*")
os.environ.setdefault("Q_SYNC", "false")

from costmonitor.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
WHITENOISE_AUTOREFRESH = True  # no collectstatic in tests
WHITENOISE_USE_FINDERS = True
