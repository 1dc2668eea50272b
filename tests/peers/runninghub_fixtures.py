"""Pytest fixtures for the local RunningHub peer (loaded as a plugin by ``tests/conftest.py``).

The server starts once per session; every test gets a fresh ``RunningHubPeer`` swapped in behind
it, seeded with two obviously fake API keys and the workflows of the seeded features:

Outfit change, workflow ``OUTFIT_CHANGE_WORKFLOW_ID`` (result from node ``"9"``, SaveImage):
    ``"12"`` LoadImage ``image`` (image): the person photo
    ``"27"`` LoadImage ``image`` (image): the garment photo
    ``"31"`` CLIPTextEncode ``text`` (string): optional hint ("upper body", "dress"…)
    ``"3"``  KSampler ``seed`` (int), ``steps`` (int), ``denoise`` (float)

AI model photo, workflow ``MODEL_PHOTO_WORKFLOW_ID`` (result from node ``"9"``):
    ``"6"``  CLIPTextEncode ``text`` (string): the prompt
    ``"7"``  CLIPTextEncode ``text`` (string): the negative prompt
    ``"10"`` LoadImage ``image`` (image): the garment or product photo
    ``"3"``  KSampler ``seed`` (int), ``steps`` (int), ``cfg`` (float)
    ``"5"``  EmptyLatentImage ``width``, ``height``, ``batch_size`` (int)

AI model photo as an AI app, webapp ``MODEL_PHOTO_WEBAPP_ID`` (result from node ``"60"``):
    ``"52"`` ``prompt`` (string), ``"39"`` ``image`` (image)

Image fields take the ``fileName`` (``api/<sha256>.<ext>``) that ``/task/openapi/upload`` gave the
same key. ``RUNNINGHUB_WORKFLOWS_SETTING`` maps these to the product's ``runninghub_workflows``
setting shape; ``runninghub_settings(peer)`` gives the ``make_settings`` overrides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

from tests.peers.runninghub import RunningHubPeer, WebApp, Workflow
from tests.peers.runninghub_app import create_runninghub_app
from tests.peers.server import PeerServer

# Obviously fake 32-character keys.
TEST_RUNNINGHUB_API_KEY = "wardrobe-test-runninghub-key-001"
OTHER_RUNNINGHUB_API_KEY = "wardrobe-test-runninghub-key-002"
TEST_RUNNINGHUB_CAP = 3  # tasks a test key may have QUEUED or RUNNING at once

OUTFIT_CHANGE_WORKFLOW_ID = "1950000000000000001"
MODEL_PHOTO_WORKFLOW_ID = "1950000000000000002"
MODEL_PHOTO_WEBAPP_ID = "1950000000000000101"

OUTFIT_CHANGE_WORKFLOW = Workflow(
    OUTFIT_CHANGE_WORKFLOW_ID,
    {
        "12": {"image": "image"},
        "27": {"image": "image"},
        "31": {"text": "string"},
        "3": {"seed": "int", "steps": "int", "denoise": "float"},
    },
    output_node_id="9",
)
MODEL_PHOTO_WORKFLOW = Workflow(
    MODEL_PHOTO_WORKFLOW_ID,
    {
        "6": {"text": "string"},
        "7": {"text": "string"},
        "10": {"image": "image"},
        "3": {"seed": "int", "steps": "int", "cfg": "float"},
        "5": {"width": "int", "height": "int", "batch_size": "int"},
    },
    output_node_id="9",
)
MODEL_PHOTO_WEBAPP = WebApp(MODEL_PHOTO_WEBAPP_ID, {"52": {"prompt": "string"}, "39": {"image": "image"}}, "60")

# The product's ``runninghub_workflows`` setting for the workflows above.
RUNNINGHUB_WORKFLOWS_SETTING: dict[str, dict[str, Any]] = {
    "outfit_change": {
        "kind": "workflow",
        "id": OUTFIT_CHANGE_WORKFLOW_ID,
        "nodes": {"person": ["12", "image"], "garment": ["27", "image"], "hint": ["31", "text"]},
        "uploads": ["person", "garment"],
    },
    "model_photo": {
        "kind": "workflow",
        "id": MODEL_PHOTO_WORKFLOW_ID,
        "nodes": {"prompt": ["6", "text"], "negative_prompt": ["7", "text"], "image": ["10", "image"]},
        "uploads": ["image"],
    },
    "model_photo_app": {
        "kind": "ai_app",
        "id": MODEL_PHOTO_WEBAPP_ID,
        "nodes": {"prompt": ["52", "prompt"], "image": ["39", "image"]},
        "uploads": ["image"],
    },
}


class ServedRunningHubPeer(RunningHubPeer):
    """A peer state bound to the session's running server."""

    base_url: str
    api_key: str


def seed_runninghub_peer(peer: RunningHubPeer) -> RunningHubPeer:
    """The test keys (cap ``TEST_RUNNINGHUB_CAP``) and the seeded features' workflows."""
    peer.add_key(TEST_RUNNINGHUB_API_KEY, cap=TEST_RUNNINGHUB_CAP)
    peer.add_key(OTHER_RUNNINGHUB_API_KEY, cap=TEST_RUNNINGHUB_CAP)
    peer.register_workflow(OUTFIT_CHANGE_WORKFLOW)
    peer.register_workflow(MODEL_PHOTO_WORKFLOW)
    peer.register_webapp(MODEL_PHOTO_WEBAPP)
    return peer


@pytest.fixture(scope="session")
def runninghub_peer_server() -> Iterator[PeerServer]:
    with PeerServer(create_runninghub_app(RunningHubPeer())) as server:
        yield server


@pytest.fixture
def runninghub_peer(runninghub_peer_server: PeerServer) -> Iterator[ServedRunningHubPeer]:
    """Fresh RunningHub state on the running server: ``base_url`` (what the product's
    ``runninghub_base_url`` should be), ``api_key`` (``TEST_RUNNINGHUB_API_KEY``), seeded workflows,
    tasks driven by the test until ``auto`` is called. Timers and webhooks stop at the end, and
    swallowed answers are let go."""
    peer = ServedRunningHubPeer(file_base_url=runninghub_peer_server.base_url)
    seed_runninghub_peer(peer)
    peer.base_url = runninghub_peer_server.base_url
    peer.api_key = TEST_RUNNINGHUB_API_KEY
    app = runninghub_peer_server.app
    assert isinstance(app, Starlette)
    app.state.peer = peer
    yield peer
    peer.close()


def runninghub_settings(peer: ServedRunningHubPeer) -> dict[str, object]:
    """``make_settings`` overrides that point the product at the peer."""
    return {
        "runninghub_base_url": peer.base_url,
        "runninghub_api_key": peer.api_key,
        "runninghub_workflows": RUNNINGHUB_WORKFLOWS_SETTING,
    }
