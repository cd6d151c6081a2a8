"""HTML building for the console: every value goes through ``h`` (escaped, attributes quoted),
pages through ``page`` (one inline style sheet, no script, a strict Content-Security-Policy)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any
from urllib.parse import urlencode

# No script at all; inline styles only; forms post to this worker only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"

STYLE = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;
background:#f4f6fa}header{background:#1d2a44;color:#fff;display:flex;gap:18px;align-items:center;padding:10px 20px}
header a{color:#dfe6f5;text-decoration:none}header a.on{color:#fff;font-weight:600;border-bottom:2px solid #7fb0ff}
header .brand{font-weight:700;color:#fff;margin-right:12px}header form{margin:0}header .grow{flex:1}
main{padding:18px 24px;max-width:1280px}h1{font-size:20px;margin:4px 0 14px}h2{font-size:16px;margin:22px 0 8px}
h3{font-size:14px;margin:14px 0 6px}table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:10px}
th,td{border-bottom:1px solid #e3e7ef;padding:5px 8px;text-align:left;vertical-align:top}th{background:#eef1f7;
font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}code,pre,textarea{
font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}pre{white-space:pre-wrap;word-break:break-all;margin:0}
.card{background:#fff;border:1px solid #dde2ec;border-radius:6px;padding:12px 16px;margin-bottom:14px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#e6e9f0}
.live{background:#d9f2e1;color:#17603a}.upcoming{background:#e1ecfb;color:#1e4f93}.ended{background:#eceff3;color:#555}
.active{background:#d9f2e1;color:#17603a}.inactive{background:#fbe3e1;color:#8f2a20}
.notice{background:#e3f4e8;border:1px solid #9ad3ac;padding:8px 12px;border-radius:5px;margin-bottom:12px}
.errors{background:#fdecea;border:1px solid #f1aaa2;color:#7d1f15;padding:8px 12px;border-radius:5px;margin-bottom:12px}
.errors ul,.field-errors{margin:4px 0 0 18px;padding:0}.field-errors{color:#a3261a}
.timeline{display:flex;gap:2px;flex-wrap:wrap}.timeline span{font-size:11px;padding:2px 5px;border-radius:3px;
background:#e6e9f0}.timeline .past{background:#d2d7e0;color:#555}.timeline .now{background:#2f6fdb;color:#fff}
.bar{position:relative;height:16px;background:#e6e9f0;border-radius:4px;overflow:visible;margin:4px 0 2px;
min-width:240px}.fill{height:100%;background:#3c8d5a;border-radius:4px}.fill.short{background:#2f6fdb}
.mark{position:absolute;top:-3px;width:2px;height:22px;background:#b8541c}.mark.reached{background:#1d2330}
.muted{color:#687185}form.inline{display:inline}input,select,button{font:inherit;padding:4px 8px}
button{cursor:pointer;background:#2f6fdb;color:#fff;border:0;border-radius:4px}button.secondary{background:#687185}
textarea{width:100%;min-height:420px}label{display:block;margin:6px 0 2px;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:14px}
"""

NAV = (
    ("milestones", "/console", "Milestones"),
    ("customer", "/console/customer", "Customer"),
    ("leaderboards", "/console/leaderboards", "Leaderboards"),
    ("operations", "/console/operations", "Operations"),
)


def h(value: Any) -> str:
    """Text for HTML content or a quoted attribute."""
    return escape("" if value is None else str(value), quote=True)


def link(path: str, **params: Any) -> str:
    """A console URL with its query, escaped for an ``href``."""
    query = urlencode({k: str(v) for k, v in params.items() if v not in (None, "")})
    return h(f"{path}?{query}" if query else path)


def a(text: Any, path: str, **params: Any) -> str:
    return f'<a href="{link(path, **params)}">{h(text)}</a>'


def pill(text: str) -> str:
    return f'<span class="pill {h(text)}">{h(text)}</span>'


def table(headers: list[str], rows: Iterable[Iterable[str]], empty: str = "none", cls: str = "") -> str:
    """``rows`` are HTML already (escape cells with ``h``)."""
    head = "".join(f'<th class="num">{h(x[1:])}</th>' if x.startswith("#") else f"<th>{h(x)}</th>" for x in headers)
    numeric = [x.startswith("#") for x in headers]
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    if not body:
        return f'<p class="muted">{h(empty)}</p>'
    return f'<table class="{h(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def messages(notice: str | None = None, errors: Iterable[str] = (), title: str | None = None) -> str:
    out = ""
    if notice:
        out += f'<div class="notice" id="notice">{h(notice)}</div>'
    errors = list(errors)
    if errors or title:
        items = "".join(f"<li>{h(e)}</li>" for e in errors)
        out += f'<div class="errors" id="errors"><strong>{h(title or "Refused")}</strong><ul>{items}</ul></div>'
    return out


def decimal(text: Any) -> Decimal | None:
    try:
        return Decimal(str(text)) if text is not None else None
    except (InvalidOperation, ValueError):
        return None


def percent(part: Decimal, whole: Decimal) -> float:
    if whole <= 0:
        return 100.0 if part > 0 else 0.0
    return float(max(Decimal(0), min(Decimal(100), part * 100 / whole)))


def page(title: str, body: str, *, section: str = "", logout: bool = False) -> str:
    nav = "".join(
        f'<a href="{href}" class="{"on" if key == section else ""}">{h(label)}</a>' for key, href, label in NAV
    )
    out = (
        '<form method="post" action="/console/logout"><button class="secondary" id="logout">Log out</button></form>'
        if logout
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{h(title)} · Milestream console</title><style>{STYLE}</style></head><body>"
        f'<header><span class="brand">Milestream</span>{nav}<span class="grow"></span>{out}</header>'
        f"<main><h1>{h(title)}</h1>{body}</main></body></html>"
    )
