#!/usr/bin/env python
"""The example Django project's manage.py (see agent_site/views.py for how to run it)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
