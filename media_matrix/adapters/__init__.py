"""Channel adapters: one module per channel type; the protocol and errors live in ``base``.

    from media_matrix.adapters import make_adapter
    adapter = make_adapter(channel_config, templates_dir=settings.templates,
                           timezone=settings.timezone)
    message = adapter.render(items)                     # render.TemplateError on a bad template
    result = adapter.send(message, checkpoint, state=previous_state)

See :mod:`media_matrix.adapters.base` for the full contract the dispatcher relies on.
"""

from __future__ import annotations

from media_matrix.adapters.base import (
    ADAPTERS,
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
    adapter_class,
    make_adapter,
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
