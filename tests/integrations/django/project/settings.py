"""Test settings: the store URLs come from the environment the pytest test sets (``AP_TEST_*``)."""

from __future__ import annotations

import json
import os

SECRET_KEY = "agents-persist-tests"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = ["agents_persist.django"]
MIDDLEWARE: list = []
ROOT_URLCONF = "tests.integrations.django.project.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

AGENTS_PERSIST = {
    "default": {"URL": os.environ["AP_TEST_URL"], "OPTIONS": json.loads(os.environ.get("AP_TEST_OPTIONS", "{}"))},
    "other": {"URL": os.environ.get("AP_TEST_OTHER_URL", "memory://")},
}
#: Thread-ID prefix of this run (tests create threads only under it), and a scratch directory.
AP_TEST_PREFIX = os.environ.get("AP_TEST_PREFIX", "django:")
AP_TEST_TMP = os.environ.get("AP_TEST_TMP", ".")
