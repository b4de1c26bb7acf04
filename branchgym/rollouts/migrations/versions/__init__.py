"""Alembic revision scripts, one per schema version of the trajectory store.

Alembic loads them by file path and skips this file; it exists so that every way of building
the package ships the folder.
"""
