"""The local S3 server's fixtures for the storage tests.

Imported here rather than listed in ``tests/conftest.py``'s ``pytest_plugins`` only while no other
test directory needs them; once listed there (``"tests.peers.s3_fixtures"``), this file goes.
"""

from tests.peers.s3_fixtures import s3_peer, s3_peer_server, s3_storage

__all__ = ["s3_peer", "s3_peer_server", "s3_storage"]
