"""/metrics answers Prometheus only: the scrape token from settings, compared in constant time;
open in development without one (the quick start shows it), absent (404) in production."""

from __future__ import annotations

from tests.conftest import Api
from tests.fixtures.settings import production_settings
from wardrobe.settings import Environment, Settings

TOKEN = "scrape-token-for-this-test-0123456789abcdef"


async def test_without_the_right_token_metrics_are_refused(api_factory: object) -> None:
    api: Api = await api_factory(metrics_token=TOKEN)  # type: ignore[operator]
    missing = await api.client.get("/metrics")
    assert (missing.status_code, missing.json()["code"]) == (401, "AUTH_REQUIRED")
    assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer "):
        resp = await api.client.get("/metrics", headers={"Authorization": wrong})
        assert resp.status_code == 401, wrong
        assert "wardrobe_http_requests_total" not in resp.text
    # A user's access token is not a scrape token.
    from tests.fixtures.auth import login_as

    admin = await login_as(api, "admin")
    assert (await api.client.get("/metrics", headers=admin.headers)).status_code == 401


async def test_the_right_token_gets_the_metrics(api_factory: object) -> None:
    api: Api = await api_factory(metrics_token=TOKEN)  # type: ignore[operator]
    await api.client.get("/health")
    resp = await api.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert 'wardrobe_http_requests_total{method="GET",route="/health",status="200"}' in resp.text
    operation = api.app.openapi()["paths"]["/metrics"]["get"]
    assert operation["security"] == [{"MetricsToken": []}]


async def test_without_a_token_metrics_are_open_in_development_and_absent_in_production(api: Api) -> None:
    assert (await api.client.get("/metrics")).status_code == 200
    assert api.app.openapi()["paths"]["/metrics"]["get"]["security"] == []
    api.settings.env = Environment.PRODUCTION  # read per request, like every setting of the route
    resp = await api.client.get("/metrics")
    assert (resp.status_code, resp.json()["code"]) == (404, "NOT_FOUND")


def test_production_refuses_to_start_without_a_scrape_token() -> None:
    real = production_settings(without=("metrics_token",))
    for token in ("", "short"):
        problems = Settings(_env_file=None, metrics_token=token, **real).production_problems()
        assert any("WARDROBE_METRICS_TOKEN" in p for p in problems), token
    ok = Settings(_env_file=None, metrics_token="m" * 48, **real)
    assert ok.production_problems() == []
