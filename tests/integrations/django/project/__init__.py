"""A tiny Django project for the integration tests: run by Django's own test runner in a subprocess."""
