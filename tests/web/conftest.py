"""The browser fixtures of ``tests/support/browser.py`` for every page test."""

from tests.support.browser import browser, playwright, tab

__all__ = ["browser", "playwright", "tab"]
