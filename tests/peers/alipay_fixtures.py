"""Pytest fixtures for the local Alipay peer (loaded as a plugin by ``tests/conftest.py``)."""
