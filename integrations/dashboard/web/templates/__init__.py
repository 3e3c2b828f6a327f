"""Jinja2 templates (a package so setuptools ships them as package data)."""
