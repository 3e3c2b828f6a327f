"""Vendored CSS and JavaScript, written for the dashboard (a package so setuptools ships them as package data)."""
