"""Command-line face: parse arguments, call one service function, print a table or JSON.

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
Each command group lives in its own module and registers itself on ``cli`` below.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

import click

from media_matrix.cli.common import AppContext, run_guarded
from media_matrix.errors import CONFIG_ENV
from media_matrix.heap import settle_heap

# Top-level command -> the command modules that define it. Modules load on first use, so a
# command pays only for its own imports (the CLI runs often, from scripts and tests).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "init": ("run",),
    "ingest": ("run",),
    "run": ("run",),
    "feeds": ("feeds",),
    "packs": ("packs", "review"),
    "tag": ("tag",),
    "audit": ("review",),
    "queue": ("schedule",),
    "unqueue": ("schedule",),
    "plan": ("schedule",),
    "status": ("schedule",),
    "daemon": ("schedule",),
    "dispatch": ("deliveries",),
    "deliveries": ("deliveries",),
    "stats": ("stats",),
    "sandbox": ("sandbox",),
    "public": ("public",),
    "officers": ("officers",),
    "serve": ("web",),
    "users": ("users",),
    "requests": ("requests",),  # 群众点单 (issue 13)
}

# What `media-matrix --help` lists beside each command: written here so the listing loads no
# command module (each would pull in its services); `<command> --help` shows the full text.
COMMAND_SUMMARIES: dict[str, str] = {
    "audit": "编辑与运维操作记录, 最新在前",
    "daemon": "常驻调度: 按时抓取订阅源、填充时段、投递、统计",
    "deliveries": "投递记录: 列表、详情、重发、取消",
    "dispatch": "投递到期的分发任务",
    "feeds": "订阅源",
    "ingest": "抓取、解析、清洗、去重并入库",
    "init": "创建或升级数据库",
    "officers": "科普信息员: 名册、个人页面与转发素材",
    "packs": "内容包",
    "plan": "未来的投递时段及其安排",
    "public": "对外服务: 跟踪链接、信息员页面、点单表单",
    "queue": "把内容包排入渠道的投递时段",
    "requests": "群众点单: 列表、导入、匹配、接单、不采纳、上报",
    "run": "运行主流程: 抓取、标注、审核、排期、投递",
    "sandbox": "运行本地模拟的微信公众号、企业微信机器人和融媒体中心接口",
    "serve": "编辑控制台 (网页)",
    "stats": "传播量统计",
    "status": "订阅源健康、各渠道队列、最近错误、守护进程",
    "tag": "试标注: 从标准输入读 JSON Lines, 输出标签",
    "unqueue": "撤回尚未发送的投递",
    "users": "控制台用户",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is looked up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMAND_MODULES.get(cmd_name, ()):
            if module not in self._loaded:
                self._loaded.add(module)
                import_module(f"media_matrix.cli.{module}").register(self)
                settle_heap(collect=False, once=True)  # start-up is now what it loaded
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from COMMAND_SUMMARIES, without importing any command module."""
        rows = [(name, COMMAND_SUMMARIES.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"配置文件 (默认: ${CONFIG_ENV}, 否则为 ./config.yaml)",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """media-matrix: 科普内容分发与媒体矩阵调度."""
    ctx.obj = AppContext(config_path)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_guarded(cli, argv))
