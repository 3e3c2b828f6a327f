"""Alembic migrations of the dashboard's store (a package so setuptools ships them)."""
