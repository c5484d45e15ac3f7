"""pooldoctor: measure whether a Django project leaks database connections outside requests."""

from __future__ import annotations

__version__ = "0.1.0"
