"""The Compose stack's nginx: the site the nginx-config service renders (its exact command from
compose.yaml, with the API's settings from the .env template), inside the frame the nginx image
gives it (conf.d/default.conf and conf.d/edge.conf from deploy/compose/nginx/), passes `nginx -t`,
over plain HTTP and with TLS. Only the upstream host changes: `nginx -t` resolves names, and `api`
exists only on the stack's network.

Needs the Debian package nginx (installed by .ci/run); without it the test fails, never skips.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.stack import compose_with, container_environment, filled_template
from tests.fixtures.nginx import nginx_binary, render_site
from tests.fixtures.tasks import OWN_PROCESSES, ROOT

pytestmark = OWN_PROCESSES

NGINX_DIR = ROOT / "deploy" / "compose" / "nginx"
EDGES = {"http": "80", "https": "443 ssl"}


def _render(edge: str, home: Path) -> str:
    """The site as the nginx-config service writes it with NGINX_EDGE=``edge``."""
    values = {**filled_template(), "NGINX_EDGE": edge, "NGINX_LISTEN": EDGES[edge]}
    service = compose_with(values)["services"]["nginx-config"]
    command = list(service["command"])
    assert command[0] == "nginx-config"
    output = command.index("--output")
    assert command[output + 1] == "/etc/wardrobe/nginx/site.conf"  # in the nginx-site volume
    args = command[1:output] + command[output + 2 :]
    env = {key: value for key, value in container_environment(service, values).items() if value}
    return render_site(env, home / "rendered.conf", *args)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each edge's site, rendered once (a CLI start costs seconds)."""
    return {edge: _render(edge, tmp_path_factory.mktemp(edge)) for edge in EDGES}


def _self_signed(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wardrobe.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir()
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _nginx_t(home: Path, site: str, edge: str) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the image's frame with the stack's conf.d, every absolute path moved under home."""
    (home / "wardrobe").mkdir(exist_ok=True)
    (home / "wardrobe" / "site.conf").write_text(site.replace("server api:", "server 127.0.0.1:"), encoding="utf-8")
    conf_d = home / "conf.d"
    conf_d.mkdir(exist_ok=True)
    default = (NGINX_DIR / "wardrobe.conf").read_text(encoding="utf-8")
    (conf_d / "default.conf").write_text(default.replace("/etc/nginx/wardrobe/", f"{home}/wardrobe/"), "utf-8")
    edge_conf = (NGINX_DIR / f"edge-{edge}.conf").read_text(encoding="utf-8")
    (conf_d / "edge.conf").write_text(edge_conf.replace("/etc/nginx/certs/", f"{home}/certs/"), "utf-8")
    temp = "\n".join(
        f"    {kind}_temp_path {home / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    frame = (
        f"pid {home / 'nginx.pid'};\nerror_log {home / 'error.log'};\nevents {{}}\n"
        f"http {{\n{temp}\n    include {conf_d}/*.conf;\n}}\n"
    )
    (home / "nginx.conf").write_text(frame, encoding="utf-8")
    command = [nginx_binary(), "-t", "-p", str(home), "-e", str(home / "error.log"), "-c", str(home / "nginx.conf")]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603


def test_the_site_is_rendered_for_the_compose_services(sites: dict[str, str]) -> None:
    site = sites["http"]
    workers = int(filled_template()["WARDROBE_WORKERS"])
    assert "server api:8000;" in site
    for i in range(workers):
        assert f"server api:{8001 + i};" in site
        assert f'"~^api{i}\\." wardrobe_api{i};' in site
    assert "listen 80;" in site
    assert "access_log /dev/stdout wardrobe;" in site  # `docker compose logs nginx`


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_nginx_accepts_the_compose_site(edge: str, sites: dict[str, str], tmp_path: Path) -> None:
    site = sites[edge]
    assert f"listen {EDGES[edge]};" in site
    if edge == "https":
        _self_signed(tmp_path / "certs")
    done = _nginx_t(tmp_path, site, edge)
    assert done.returncode == 0, done.stderr


def test_https_needs_the_certificate_files(sites: dict[str, str], tmp_path: Path) -> None:
    """So the TLS settings are really read: without the files nginx refuses to start."""
    done = _nginx_t(tmp_path, sites["https"], "https")
    assert done.returncode != 0
    assert "fullchain.pem" in done.stderr
