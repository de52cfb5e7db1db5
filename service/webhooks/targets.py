"""Where a webhook may be sent: the outbound guard (service.outbound) with the webhook policy, https to public
addresses on the ports 443 and 8443 only unless ``WEBHOOKS_ALLOW_PRIVATE_TARGETS``; checked at subscription
(a 422 naming the field) and again at delivery (the dispatcher's transport)."""

from __future__ import annotations

from service import outbound
from service.errors import ValidationFailed

PORTS = frozenset({443, 8443})


def policy(allow_private: bool) -> outbound.Policy:
    return outbound.Policy("Webhook", allow_private=allow_private, ports=PORTS)


async def check_url(url: str, *, allow_private: bool, field: str = "url") -> str:
    """The URL if it is an acceptable target, else a 422 naming the field."""
    try:
        await outbound.check_url(url, policy(allow_private))
    except outbound.TargetRefused as exc:
        raise ValidationFailed.on(field, exc.message, exc.code) from None
    return url


def transport(allow_private: bool) -> outbound.GuardedTransport:
    return outbound.GuardedTransport(policy(allow_private))
