"""Settings of the example project: the agents_persist app and its one store."""

import os

SECRET_KEY = "example-only-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
INSTALLED_APPS = ["agents_persist.django"]  # checkpointers, system checks, manage.py agents_persist
MIDDLEWARE: list = []  # a JSON API: no sessions, no CSRF
ROOT_URLCONF = "agent_site.urls"
DATABASES: dict = {}  # the conversations live in AGENTS_PERSIST, not in a database

AGENTS_PERSIST = {
    # None: $AGENTS_PERSIST_URL, else the embedded sqlite:///agents_persist.db in the working directory
    "default": {"URL": os.environ.get("AGENTS_PERSIST_URL"), "OPTIONS": {}},
}
