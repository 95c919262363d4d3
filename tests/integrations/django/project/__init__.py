"""The Django integration tests' settings and TestCases, on the example project (examples/django_project)."""
