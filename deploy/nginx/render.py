#!/usr/bin/env python3
"""Render deploy/nginx/chatsvc.conf.template for a list of chatsvc processes.

    python deploy/nginx/render.py 10.0.0.11:8000 10.0.0.12:8000 --server-name chat.example.com \\
        --tls-cert /etc/ssl/chat.pem --tls-key /etc/ssl/chat.key > /etc/nginx/conf.d/chatsvc.conf

With --main PREFIX it writes a whole nginx.conf whose pid file, logs and temporary files live under
PREFIX, for running nginx as an unprivileged foreground process (nginx -p PREFIX -c nginx.conf -e stderr).
Only the standard library is used, so it runs anywhere nginx does.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("chatsvc.conf.template")

MAIN = """\
# A whole nginx.conf for chatsvc alone; every path is under {{prefix}}.
worker_processes {{workers}};
pid {{prefix}}/nginx.pid;
error_log {{prefix}}/error.log warn;
daemon off;

events {
    worker_connections {{worker_connections}};
}

http {
    access_log {{prefix}}/access.log;
    client_body_temp_path {{prefix}}/client_body;
    proxy_temp_path {{prefix}}/proxy;
    fastcgi_temp_path {{prefix}}/fastcgi;
    uwsgi_temp_path {{prefix}}/uwsgi;
    scgi_temp_path {{prefix}}/scgi;
    types { text/html html; application/javascript js; text/css css; }
    default_type application/octet-stream;

{{site}}
}
"""


def fill(template: str, **values: object) -> str:
    """Replace each {{name}}; nginx's own $variables are left alone."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise KeyError(f"the template names {match.group(1)!r}, which has no value")
        return str(values[match.group(1)])

    return re.sub(r"\{\{(\w+)\}\}", value, template)


def upstream_line(address: str, max_fails: int, fail_timeout: str) -> str:
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}|unix:/\S+", address):
        raise SystemExit(f"not a host:port or unix:/path upstream: {address!r}")
    return f"    server {address} max_fails={max_fails} fail_timeout={fail_timeout};"


def render_site(args: argparse.Namespace) -> str:
    listen = [f"    listen {args.listen};"]
    if args.tls_cert:
        # No HTTP/2: nginx proxies websockets over HTTP/1.1 only.
        listen = [f"    listen {args.tls_listen} ssl;",
                  f"    ssl_certificate {args.tls_cert};", f"    ssl_certificate_key {args.tls_key};",
                  "    ssl_protocols TLSv1.2 TLSv1.3;"]
    return fill(
        TEMPLATE.read_text(),
        upstream_servers="\n".join(upstream_line(a, args.max_fails, args.fail_timeout) for a in args.upstreams),
        listen_lines="\n".join(listen),
        server_name=args.server_name,
        max_body=args.max_body,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstreams", nargs="+", help="each chatsvc process, as host:port or unix:/path")
    parser.add_argument("--listen", default="80", help="nginx's listen address for plain HTTP (default 80)")
    parser.add_argument("--server-name", default="_", help="the public host name (default: any)")
    parser.add_argument("--tls-cert", help="certificate file: serve HTTPS on --tls-listen instead of HTTP")
    parser.add_argument("--tls-key", help="the certificate's key file")
    parser.add_argument("--tls-listen", default="443")
    parser.add_argument("--max-fails", type=int, default=1,
                        help="failed attempts before a process is left out for --fail-timeout (default 1)")
    parser.add_argument("--fail-timeout", default="5s")
    parser.add_argument("--max-body", default="10m", help="largest request body (default 10m)")
    parser.add_argument("--main", metavar="PREFIX",
                        help="write a whole nginx.conf with every path under PREFIX (unprivileged nginx)")
    parser.add_argument("--workers", default="1", help="worker_processes with --main (default 1)")
    parser.add_argument("--worker-connections", type=int, default=4096,
                        help="with --main; each proxied socket uses two (default 4096)")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def render(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    site = render_site(args)
    if not args.main:
        return site
    indented = "\n".join(("    " + line) if line else line for line in site.splitlines())
    return fill(MAIN, prefix=args.main.rstrip("/"), workers=args.workers,
                                     worker_connections=args.worker_connections, site=indented)


if __name__ == "__main__":
    sys.stdout.write(render())
