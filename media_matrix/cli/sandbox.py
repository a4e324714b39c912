"""``media-matrix sandbox [--port N]``: the loopback channel servers in the foreground."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from media_matrix.cli.common import BoundedFloat, BoundedInt
from media_matrix.sandbox import (
    Faults,
    MediaCentreSandbox,
    SandboxServers,
    WechatSandbox,
    WecomSandbox,
)

DEFAULT_PORT = 8700


def _faults(latency: float, error_rate: float, seed: int) -> Faults:
    return Faults(latency=latency, error_rate=error_rate, seed=seed)


def register(cli: click.Group) -> None:
    @cli.command("sandbox")
    @click.option(
        "--port",
        type=click.IntRange(0, 65533),
        default=DEFAULT_PORT,
        show_default=True,
        help="起始端口: 微信 N, 企业微信 N+1, 融媒体中心 N+2 (0: 任意空闲端口)",
    )
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--latency", type=BoundedFloat(0, 60), default=0.0, help="每个应答额外延迟的秒数")
    @click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, help="临时错误的比例")
    @click.option("--seed", type=BoundedInt(0, 2**32 - 1), default=0, help="错误抽样的随机种子")
    @click.option("--verbose", is_flag=True, help="记录每个请求")
    def sandbox(
        port: int, host: str, latency: float, error_rate: float, seed: int, verbose: bool
    ) -> None:
        """运行沙箱服务 (微信公众号、企业微信机器人、融媒体中心), 直到 Ctrl-C。

        微信: appid wx-sandbox-appid, secret sandbox-secret。融媒体中心 secret:
        sandbox-secret。企业微信接受任意机器人 key。
        """
        servers = SandboxServers(
            host=host,
            port=port,
            verbose=verbose,
            wechat=WechatSandbox(faults=_faults(latency, error_rate, seed)),
            wecom=WecomSandbox(faults=_faults(latency, error_rate, seed + 1)),
            mediacentre=MediaCentreSandbox(faults=_faults(latency, error_rate, seed + 2)),
        )
        try:
            servers.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        previous = signal.signal(signal.SIGTERM, on_signal)
        try:
            urls = servers.urls
            click.echo(f"wechat       {urls['wechat']}    (appid wx-sandbox-appid)")
            click.echo(f"wecom        {urls['wecom']}    (robot: /cgi-bin/webhook/send?key=ANY)")
            click.echo(f"mediacentre  {urls['mediacentre']}    (POST /api/manuscripts)")
            click.echo("Ctrl-C to stop.", err=True)
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            servers.stop()
            click.echo("sandbox stopped", err=True)
