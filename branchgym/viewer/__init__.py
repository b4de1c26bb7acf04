"""The trajectory-tree web page: ``branchgym view --db URL`` (read-only, bound to 127.0.0.1)."""

from branchgym.viewer.app import create_app

__all__ = ["create_app"]
