"""Helpers the test suites share: plain modules, never test modules or conftests."""
