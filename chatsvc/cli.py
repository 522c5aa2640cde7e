"""The `chatsvc` command: serve, migrate, agents, and the subsystems' own commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatsvc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from chatsvc import server_commands

    server_commands.register(commands)

    evals_parser = commands.add_parser("eval", help="quality evaluations that print figures beside baselines")
    evals = evals_parser.add_subparsers(dest="eval_command", required=True, metavar="WHAT")

    from chatsvc.classifier import commands as classifier_commands
    from chatsvc.gaps import commands as gaps_commands
    from chatsvc.kb_suggest import commands as kb_commands

    classifier_commands.register(commands, evals)
    kb_commands.register(commands, evals)
    gaps_commands.register(commands, evals)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:
        print(f"chatsvc {args.command}: error: {exc}", file=sys.stderr)
        return 2


class CommandError(Exception):
    """A failure the user can fix; printed without a traceback and exits with status 2."""
