"""Channel adapters: one module per channel type; the protocol and errors live in ``base``.

    from media_matrix.adapters import make_adapter
    adapter = make_adapter(channel_config, templates_dir=settings.templates,
                           timezone=settings.timezone)
    message = adapter.render(items)                     # render.TemplateError on a bad template
    result = adapter.send(message, checkpoint, state=previous_state)

See :mod:`media_matrix.adapters.base` for the full contract the dispatcher relies on.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media_matrix.adapters.base import (
    Adapter,
    AdapterError,
    AmbiguousError,
    AuthError,
    Checkpoint,
    Message,
    NothingSent,
    OutgoingItem,
    QuotaError,
    RejectedError,
    RetryableError,
    SendResult,
)

if TYPE_CHECKING:
    import requests

    from media_matrix.adapters.base import BaseAdapter
    from media_matrix.netpolicy import NetworkPolicy


ADAPTERS: dict[str, tuple[str, str]] = {
    "wechat_mp": ("media_matrix.adapters.wechat_mp", "WechatMpAdapter"),
    "wecom_robot": ("media_matrix.adapters.wecom_robot", "WecomRobotAdapter"),
    "webhook": ("media_matrix.adapters.webhook", "WebhookAdapter"),
    "outbox": ("media_matrix.adapters.outbox", "OutboxAdapter"),
    "poster": ("media_matrix.adapters.poster", "PosterAdapter"),
}


def adapter_class(channel_type: str) -> type[BaseAdapter]:
    try:
        module, name = ADAPTERS[channel_type]
    except KeyError:
        raise ValueError(f"no adapter for channel type {channel_type!r}") from None
    return getattr(import_module(module), name)


def make_adapter(
    channel_config: Any,
    *,
    templates_dir: Path | str | None = None,
    session: requests.Session | None = None,
    timezone: str = "Asia/Shanghai",
    network: NetworkPolicy | None = None,
) -> Adapter:
    """The adapter for a channel config (``channel_config.type`` picks the class).

    ``templates_dir`` (``Settings.templates``) is used by ``adapter.render`` (default: the
    ``channels/`` folder of the checkout); ``timezone`` (``Settings.timezone``) is the one
    templates show times in; ``session`` lets callers share a connection pool (an adapter closes
    only a session it created). Build one adapter per channel and reuse it: WeChat media and
    tokens are cached per process, and the WeCom rate window is per robot. ``network``
    (``Settings.network.policy``) is the address policy for fetching pack images.
    """
    cls = adapter_class(channel_config.type)
    return cls(  # type: ignore[return-value]
        channel_config,
        templates_dir=templates_dir,
        session=session,
        timezone=timezone,
        network=network,
    )


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterError",
    "AmbiguousError",
    "AuthError",
    "Checkpoint",
    "Message",
    "NothingSent",
    "OutgoingItem",
    "QuotaError",
    "RejectedError",
    "RetryableError",
    "SendResult",
    "adapter_class",
    "make_adapter",
]
