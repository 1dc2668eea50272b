"""Captcha before SMS: risk rules that, once tripped, make an SMS code need a captcha ticket.

SMS pumping (bots requesting codes for many numbers, often premium ones, to share the carrier's
fee) costs money per message, which the per-phone and per-address caps only bound per phone and
per address. Each rule is a set of windows (``"5/hour;20/day"``) over the codes let through per
client address, per phone prefix (the first N digits: carrier block and area, where pumped numbers
cluster) and per device (``X-Device-Id``, when the client sends one). While a window of a rule is
full, a request without a ticket answers ``CAPTCHA_REQUIRED``; one with a ticket Tencent accepts
goes on. A rule never blocks: whoever fills a window (say an attacker, the prefix of a victim's
number) only makes the next request need a puzzle that a person solves.

The windows of a request are taken all or none (``hit_all``), so concurrent requests cannot all
slip past a rule that has room for one. A request asked for a captcha, or whose ticket fails,
takes nothing from any window, its phone's least of all.
"""

from __future__ import annotations

from ipaddress import IPv6Address, ip_address, ip_network
from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field

from wardrobe.core.errors import AppError, ErrorCode, RateLimited
from wardrobe.core.metrics import AUTH_EVENTS
from wardrobe.core.ratelimit import Windows, parse_limits
from wardrobe.core.schemas import InputModel

if TYPE_CHECKING:
    from wardrobe.modules.auth.parts import AccountParts
    from wardrobe.settings import Settings

# What a device id may look like (UUIDs, vendor ids, base64): bounded, nothing to escape in a key.
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:+/=-]{1,128}$"


class CaptchaTicket(InputModel):
    """What the Tencent Captcha widget's callback gives the client after a solved puzzle."""

    model_config = ConfigDict(extra="forbid")

    ticket: str = Field(min_length=1, max_length=2048, pattern=r"^[\x21-\x7e]+$")
    randstr: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")


def address_key(client_ip: str) -> str:
    """The address a rule counts: an IPv6 client by its /64, the block one subscriber gets (one
    line or phone can rotate through all of it); IPv4 as it is."""
    try:
        address = ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def risk_windows(s: Settings, *, phone: str, client_ip: str, device_id: str | None) -> Windows:
    """The windows of the rules that apply to this request (a rule that is off, or a device rule
    without a device id, has none)."""
    rules = (
        (s.captcha_rule_per_ip, "sms-risk-ip", address_key(client_ip)),
        (s.captcha_rule_per_phone_prefix, "sms-risk-prefix", phone[: s.captcha_phone_prefix_digits]),
        (s.captcha_rule_per_device, "sms-risk-device", device_id),
    )
    return [(parse_limits(spec), (name, key)) for spec, name, key in rules if spec and key]


async def pass_gate(
    parts: AccountParts,
    send_windows: Windows,
    *,
    phone: str,
    client_ip: str,
    device_id: str | None,
    captcha: CaptchaTicket | None,
) -> None:
    """Let the request on, or raise ``CAPTCHA_REQUIRED`` / ``CAPTCHA_INVALID``. Call only with
    captcha on (``parts.captcha``); ``send_windows`` are the caps the request takes afterwards."""
    verifier = parts.captcha
    if verifier is None:
        raise RuntimeError("pass_gate needs parts.captcha")
    limiter = parts.limiter
    # A request the caps refuse anyway answers 429 first: no puzzle shown, no ticket spent.
    for items, ids in send_windows:
        await limiter.peek(items, *ids)
    windows = risk_windows(parts.settings, phone=phone, client_ip=client_ip, device_id=device_id)
    if captcha is not None:
        await verifier.verify(ticket=captcha.ticket, randstr=captcha.randstr, user_ip=client_ip)
        # Still counted, so a rule's longer windows see the codes sent past its shorter ones.
        await limiter.count(windows)
        return
    try:
        await limiter.hit_all(windows)
    except RateLimited:
        AUTH_EVENTS.labels("captcha", "required").inc()
        raise AppError(ErrorCode.CAPTCHA_REQUIRED, data={"captcha_app_id": verifier.app_id}) from None
