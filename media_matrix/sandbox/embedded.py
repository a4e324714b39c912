"""Channels whose address is ``sandbox://NAME/...`` talk to in-process sandbox servers.

This is how the default config runs the whole flow offline with no credentials: the main job
(and the daemon) start the loopback servers on free ports and point those channels at them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from media_matrix.config import Settings
from media_matrix.sandbox import SandboxServers
from media_matrix.sandbox.state import load, save

SCHEME = "sandbox://"
URL_FIELDS = ("api_base", "webhook_url", "url")


def _sandbox_fields(channel: Any) -> dict[str, str]:
    return {
        name: value
        for name in URL_FIELDS
        if isinstance(value := getattr(channel, name, None), str) and value.startswith(SCHEME)
    }


def uses_sandbox(settings: Settings) -> bool:
    return any(_sandbox_fields(c) for c in settings.channels if c.enabled)


def resolve(value: str, urls: dict[str, str]) -> str:
    """'sandbox://wechat' -> 'http://127.0.0.1:PORT'; the rest of the address is kept."""
    name, _, rest = value.removeprefix(SCHEME).partition("/")
    if name not in urls:
        raise ValueError(
            f"unknown sandbox server {name!r} in {value!r}; expected one of {list(urls)}"
        )
    return urls[name] + ("/" + rest if rest else "")


def state_file(settings: Settings) -> Path:
    """Where the embedded sandboxes remember what they accepted: beside the database."""
    database = Path(settings.database)
    return database.with_name(database.name + ".sandbox.json")


def remember(servers: SandboxServers, path: Path) -> None:
    """Restore the servers' state from ``path`` and save it there after every request, so the
    next command (a second ``dispatch --once``, a restarted daemon) polls the same publishes."""
    load(servers.apps, path)
    guard = threading.Lock()

    def save_now() -> None:
        with guard:
            save(servers.apps, path)

    for app in servers.apps.values():
        app.after_request = save_now


@contextmanager
def embedded_sandbox(settings: Settings) -> Iterator[tuple[Settings, SandboxServers | None]]:
    """Settings whose sandbox:// channels point at servers running for the duration, with the
    state the previous command's servers left (see :func:`remember`)."""
    if not uses_sandbox(settings):
        yield settings, None
        return
    servers = SandboxServers()
    remember(servers, state_file(settings))
    with servers:
        channels = [
            channel.model_copy(
                update={k: resolve(v, servers.urls) for k, v in _sandbox_fields(channel).items()}
            )
            for channel in settings.channels
        ]
        yield settings.model_copy(update={"channels": channels}), servers
