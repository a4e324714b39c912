"""One mapping from a failure (an exception, an HTTP status, or the raw text stored for it) to
the Chinese phrase people read: 连接被拒绝, 超时, HTTP 404 未找到, 证书错误, 地址被拒绝 ...

Pure, no imports from the project: ingest feed errors, delivery errors and every table that
shows them use it. The raw detail stays where machines and operators look (the store,
``--json``, the log); people's tables show the phrase.
"""

from __future__ import annotations

import re
import socket
import ssl

HTTP_PHRASES: dict[int, str] = {
    400: "请求有误",
    401: "未授权",
    403: "禁止访问",
    404: "未找到",
    405: "方法不允许",
    408: "请求超时",
    410: "已删除",
    413: "内容过大",
    429: "请求过多(限流)",
    500: "服务器内部错误",
    502: "网关错误",
    503: "服务暂不可用",
    504: "网关超时",
}

# Checked in order on the raw text (lower-cased): the first match names the failure. The
# address check comes before "refused" (its text says "refused: ... not in network.allow").
_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), phrase)
    for pattern, phrase in (
        (
            r"network\.allow|only http\(s\) urls|not a public address|cannot check the peer",
            "地址被拒绝",
        ),
        (r"connection refused|errno 111|econnrefused", "连接被拒绝"),
        (r"certificate|ssl|tls", "证书错误"),
        (r"timed out|timeout|deadline", "超时"),
        (
            r"name or service not known|nodename nor servname|failed to resolve|getaddrinfo"
            r"|temporary failure in name resolution|cannot resolve",
            "域名无法解析",
        ),
        (r"connection reset|connection aborted|remotedisconnected|broken pipe", "连接被中断"),
        (r"network is unreachable|no route to host", "网络不可达"),
        (r"redirects", "重定向过多"),
        (r"byte.{0,3}cap|over the .*cap|too large|exceeds", "内容超过大小上限"),
        (r"template|jinja", "模板错误"),
        (r"no such file|not found|does not exist", "文件不存在"),
        (r"lease lost", "租约已失(发送程序停顿)"),
        (r"errcode|errmsg", "接口返回错误"),
        (r"parse|not well-formed|xml|yaml|json", "内容无法解析"),
    )
)
_HTTP = re.compile(r"\bhttp (\d{3})\b")


def http_phrase(status: int) -> str:
    """``HTTP 404 未找到``; a status without a known name keeps its class (4xx/5xx)."""
    name = HTTP_PHRASES.get(status)
    if name is None:
        name = "服务器错误" if status >= 500 else "请求被拒绝" if status >= 400 else "异常响应"
    return f"HTTP {status} {name}"


def error_phrase(error: BaseException | int | str | None) -> str:
    """The Chinese phrase for a failure; "" for none. Unknown failures read 其他错误."""
    if error is None or error == "":
        return ""
    if isinstance(error, bool):
        return "其他错误"
    if isinstance(error, int):
        return http_phrase(error)
    if isinstance(error, BaseException):
        return _exception_phrase(error)
    return _text_phrase(str(error))


def _exception_phrase(exc: BaseException) -> str:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        status = getattr(current, "http_status", None)
        if isinstance(status, int) and not isinstance(status, bool):
            return http_phrase(status)
        if hasattr(current, "why"):  # the address check's refusal (httpclient.PeerRefused)
            return "地址被拒绝"
        for kind, phrase in (
            (ConnectionRefusedError, "连接被拒绝"),
            (ssl.SSLError, "证书错误"),
            (socket.gaierror, "域名无法解析"),
            (TimeoutError, "超时"),
            (ConnectionResetError, "连接被中断"),
            (FileNotFoundError, "文件不存在"),
        ):
            if isinstance(current, kind):
                return phrase
        current = current.__cause__ or current.__context__
    return _text_phrase(f"{type(exc).__name__}: {exc}")


def _text_phrase(text: str) -> str:
    lowered = text.lower()
    match = _HTTP.search(lowered)
    if match:
        return http_phrase(int(match.group(1)))
    for pattern, phrase in _TEXT_RULES:
        if pattern.search(lowered):
            return phrase
    return "其他错误"
