"""Fixtures of the fault matrix (defined in faultkit.py, next to this file)."""

from __future__ import annotations

from faultkit import door, pg_schema, throwaway_pg  # noqa: F401
