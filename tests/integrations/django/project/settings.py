"""Test settings: the example project's (examples/django_project), with the stores the pytest test sets (``AP_TEST_*``)."""

from __future__ import annotations

import json
import os

from agent_site.settings import *  # noqa: F401,F403  (the example's apps, URLs and views)

DEBUG = False
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}  # Django's TestCase wants one

AGENTS_PERSIST = {
    "default": {"URL": os.environ["AP_TEST_URL"], "OPTIONS": json.loads(os.environ.get("AP_TEST_OPTIONS", "{}"))},
    "other": {"URL": os.environ.get("AP_TEST_OTHER_URL", "memory://")},
}
#: Thread-ID prefix of this run (tests create threads only under it), and a scratch directory.
AP_TEST_PREFIX = os.environ.get("AP_TEST_PREFIX", "django:")
AP_TEST_TMP = os.environ.get("AP_TEST_TMP", ".")
