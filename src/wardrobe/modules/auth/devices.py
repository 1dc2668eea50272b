"""What a user sees of each of their login sessions: a device name and a masked address.

The device name comes from the User-Agent through ua-parser (the maintained port of the uap-core
rules) rather than our own guesses; a WeChat mini program, which reports itself as the WeChat
browser plus ``miniProgram``, is named as such. Addresses are masked before they are stored (IPv4
to its /24, IPv6 to its /48): enough for "that was not my city", not a record of where someone was.
"""

from __future__ import annotations

import functools
import ipaddress

from ua_parser import parse

_GENERIC = {None, "", "Other", "Generic Smartphone", "Generic Feature Phone", "Spider"}
MAX_LABEL = 64


@functools.lru_cache(maxsize=1024)
def device_label(user_agent: str | None) -> str | None:
    """``"WeChat mini program on iOS (iPhone)"``, ``"Chrome on Windows"``; None if nothing is known."""
    if not user_agent:
        return None
    found = parse(user_agent[:512])
    browser = found.user_agent.family if found.user_agent else None
    if "miniProgram" in user_agent:
        browser = "WeChat mini program"
    system = found.os.family if found.os else None
    device = found.device.family if found.device else None
    parts = [p for p in (browser, f"on {system}" if system not in _GENERIC else None) if p and p not in _GENERIC]
    if device not in _GENERIC and device != system:
        parts.append(f"({device})")
    return " ".join(parts)[:MAX_LABEL] or None


def mask_ip(address: str | None) -> str | None:
    """``203.0.113.7`` → ``203.0.113.*``; ``2001:db8:1:2::5`` → ``2001:db8:1::/48``."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(str(ip).split(".")[:3]) + ".*"
    return str(ipaddress.ip_network(f"{ip}/48", strict=False))
