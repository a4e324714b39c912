"""One way to make an HTTP session, for feeds and channel adapters alike.

The environment is honoured only when it configures something (a proxy or a netrc): then
requests reads it as usual. Otherwise ``trust_env`` is off, because requests' per-request
environment look-ups find nothing yet cost a good share of a small request's CPU. A CA bundle
from ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` is kept either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import requests

_ENV_NETWORK = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "netrc")


def environment_configures_network() -> bool:
    if any(key.lower() in _ENV_NETWORK for key in os.environ):
        return True
    home = Path.home()
    return (home / ".netrc").exists() or (home / "_netrc").exists()


def make_session(pool: int = 10, *, user_agent: str | None = None) -> requests.Session:
    """A session pooling ``pool`` connections per host."""
    session = requests.Session()
    session.trust_env = environment_configures_network()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    if user_agent:
        session.headers["User-Agent"] = user_agent
    size = max(10, pool)
    adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
