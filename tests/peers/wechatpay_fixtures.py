"""Pytest fixtures for the local WeChat Pay peer (loaded as a plugin by ``tests/conftest.py``)."""
