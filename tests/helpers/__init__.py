"""Helpers the test suites share: plain modules, never test modules or conftests.

A test module imports what it shares from here (or from the other plain modules:
``tests/oracle.py``, ``tests/chaos/cluster.py``, ``tests/signals/*``,
``tests/integration/chromium.py``); fixtures come through ``pytest_plugins`` in
``tests/conftest.py`` (``tests/helpers/fixtures.py``). ``tests/unit/test_test_imports.py``
fails when any module under tests/ imports a test module or a conftest.
"""
