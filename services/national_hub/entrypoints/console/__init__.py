"""The operator console at /console/ (API.md "Operator console"): router.py, session.py, templates/, static/."""

from services.national_hub.entrypoints.console.router import install

__all__ = ["install"]
