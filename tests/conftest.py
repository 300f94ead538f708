"""The fixtures every suite may use, as a pytest plugin (``tests/helpers/fixtures.py``):
test modules share fixtures this way and helpers through ``tests/helpers``, never by
importing a test module or a conftest (``tests/unit/test_test_imports.py``)."""

pytest_plugins = ("tests.helpers.fixtures",)
