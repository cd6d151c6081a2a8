"""The console's pages: server-rendered HTML over the worker's API (client.py) and, for the
milestones themselves, this worker's registry of definitions (the one the API validates against).

Every page is a plain aiohttp handler; ``routes`` lists them for the worker (__init__.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson

from ..engine.cycles import Window, calendar_window
from ..engine.lifecycle import status
from ..engine.registry import Compiled
from ..pipeline.topology import Topology
from ..schemas.definitions import CalendarCycles, CustomCycles, MilestoneDefinition, RollingCycles
from ..settings import Settings
from ..worker.web import CONSOLE, CONSOLE_COOKIE, token_matches
from . import tails
from .client import ApiClient, path, reasons
from .html import CSP, a, decimal, h, link, messages, page, percent, pill, table

Handler = Callable[[Any], Awaitable[Any]]
TIMELINE_CYCLES = 36
HISTORY_ROWS = 50


def html_response(text: str, status_code: int = 200) -> Any:
    from aiohttp import web

    return web.Response(
        text=text,
        status=status_code,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def when(text: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' UTC (escaped)."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return h(text)
    return h(moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M"))


def cycles_text(definition: MilestoneDefinition) -> str:
    cycles = definition.cycles
    if isinstance(cycles, CalendarCycles):
        return f"{cycles.count} × {cycles.frequency.value} from {cycles.start_date}"
    if isinstance(cycles, CustomCycles):
        return f"{len(cycles.periods)} custom periods"
    if isinstance(cycles, RollingCycles):
        return f"{cycles.count} × {cycles.frequency.value} from each customer's first activity"
    limit = getattr(cycles, "max_cycles", None)
    return "till achieved" + (f" (at most {limit})" if limit else "")


def timeline(definition: MilestoneDefinition, now: datetime) -> str:
    cycles = definition.cycles
    if isinstance(cycles, CalendarCycles):
        count = cycles.count
    elif isinstance(cycles, CustomCycles):
        count = len(cycles.periods)
    else:
        return f'<span class="muted">{h(cycles_text(definition))}: cycles start per customer</span>'
    windows: list[Window] = [calendar_window(definition, i) for i in range(1, min(count, TIMELINE_CYCLES) + 1)]
    cells = []
    for w in windows:
        cls = "now" if w.contains(now) else "past" if w.end is not None and w.end <= now else ""
        title = f"{w.name}: {w.start:%Y-%m-%d} to {w.end:%Y-%m-%d}" if w.end else w.name
        cells.append(f'<span class="{cls}" title="{h(title)}">{w.index}</span>')
    more = f'<span class="muted">… {count - len(windows)} more</span>' if count > len(windows) else ""
    return f'<div class="timeline">{"".join(cells)}{more}</div>'


def target_text(target: Any) -> str:
    if target.value is not None:
        value = str(target.value)
    elif target.values_per_cycle:
        value = "per cycle: " + ", ".join("–" if v is None else str(v) for v in target.values_per_cycle)
    else:
        value = "per customer"
    subs = ", ".join(
        f"{s.name} {s.value}{'%' if s.criterion == 'percentage' else ''}" for s in getattr(target, "sub_targets", ())
    )
    return (
        f"<strong>{h(target.name)}</strong> <code>{h(target.target_id)}</code>: "
        f"{h(target.kpi.value)} of {h(target.activity.value)} ≥ {h(value)}"
        + (f' <span class="muted">(sub-targets: {h(subs)})</span>' if subs else "")
    )


def definition_json(definition: MilestoneDefinition) -> str:
    return orjson.dumps(definition.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode()


def starter_definition(now: datetime) -> str:
    start = (now - timedelta(days=1)).date()
    example = {
        "type": "milestone_definition",
        "milestone_id": "new-milestone",
        "name": "Spend 5000 a month",
        "starts_at": f"{start.isoformat()}T00:00:00+00:00",
        "ends_at": f"{start.replace(year=start.year + 1).isoformat()}T00:00:00+00:00",
        "timezone": "UTC",
        "cycles": {"kind": "calendar", "frequency": "monthly", "start_date": start.isoformat(), "count": 12},
        "group": {
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Spend 5000",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": "5000",
                    "sub_targets": [{"name": "Halfway", "criterion": "percentage", "value": 50}],
                }
            ]
        },
        "settings": {"leaderboard": True},
    }
    return orjson.dumps(example, option=orjson.OPT_INDENT_2).decode()


class Console:
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        client: ApiClient,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.settings = settings
        self.topology = topology
        self.client = client
        self.clock = clock
        self.token = settings.api_token.get_secret_value()

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", CONSOLE, self.milestones),
            ("GET", f"{CONSOLE}/login", self.login_form),
            ("POST", f"{CONSOLE}/login", self.login),
            ("POST", f"{CONSOLE}/logout", self.logout),
            ("GET", f"{CONSOLE}/milestone", self.milestone),
            ("GET", f"{CONSOLE}/edit", self.editor),
            ("POST", f"{CONSOLE}/edit", self.publish),
            ("POST", f"{CONSOLE}/status", self.set_status),
            ("POST", f"{CONSOLE}/clone", self.clone),
            ("GET", f"{CONSOLE}/customer", self.customer),
            ("GET", f"{CONSOLE}/leaderboards", self.leaderboards),
            ("GET", f"{CONSOLE}/operations", self.operations),
        ]

    def _page(self, title: str, body: str, section: str = "", status_code: int = 200) -> Any:
        return html_response(page(title, body, section=section, logout=bool(self.token)), status_code)

    # ------------------------------------------------------------------ login
    async def login_form(self, request: Any, error: str = "", status_code: int = 200) -> Any:
        from aiohttp import web

        if not self.token:
            raise web.HTTPSeeOther(CONSOLE)
        body = (
            messages(errors=[error] if error else [], title="Not logged in" if error else None)
            + '<form method="post" action="/console/login" class="card" style="max-width:420px">'
            '<label for="token">API token (MILESTREAM_API_TOKEN)</label>'
            '<input type="password" name="token" id="token" autocomplete="current-password" style="width:100%" '
            'autofocus> <p><button type="submit" id="login">Log in</button></p></form>'
        )
        return html_response(page("Log in", body), status_code)

    async def login(self, request: Any) -> Any:
        from aiohttp import web

        if not self.token:
            raise web.HTTPSeeOther(CONSOLE)
        form = await request.post()
        given = str(form.get("token", "")).strip()
        if not given or not token_matches(f"Bearer {given}", self.token):
            return await self.login_form(request, "wrong token", 401)
        response = web.HTTPSeeOther(CONSOLE)
        response.set_cookie(
            CONSOLE_COOKIE, given, path=CONSOLE, httponly=True, samesite="Strict", secure=request.secure
        )
        raise response

    async def logout(self, request: Any) -> Any:
        from aiohttp import web

        response = web.HTTPSeeOther(f"{CONSOLE}/login" if self.token else CONSOLE)
        response.del_cookie(CONSOLE_COOKIE, path=CONSOLE)
        raise response

    # ------------------------------------------------------------- milestones
    def _compiled(self, milestone_id: str) -> Compiled | None:
        return self.topology.registry.milestones.get(milestone_id)

    async def milestones(self, request: Any) -> Any:
        now = self.clock()
        rows = []
        for mid, compiled in sorted(self.topology.registry.milestones.items()):
            d = compiled.definition
            timeline_status, activity = status(d, now)
            rows.append(
                [
                    a(mid, f"{CONSOLE}/milestone", id=mid),
                    h(d.name),
                    h(d.org_id),
                    pill(timeline_status) + " " + pill(activity),
                    f"{when(d.starts_at.isoformat())} → {when(d.ends_at.isoformat())}",
                    h(cycles_text(d)) + timeline(d, now),
                    "<br>".join(target_text(t) for t in compiled.targets),
                ]
            )
        body = (
            f'<p><a href="{link(CONSOLE + "/edit")}">New milestone</a> · {len(rows)} milestones on this worker</p>'
            + table(
                ["Id", "Name", "Org", "Status", "Runs (UTC)", "Cycles", "Targets"],
                rows,
                empty="No milestones yet: create one with “New milestone”.",
                cls="milestones",
            )
        )
        return self._page("Milestones", body, "milestones")

    async def milestone(
        self, request: Any, notice: str = "", errors: list[str] | None = None, milestone_id: str | None = None
    ) -> Any:
        mid = milestone_id or request.query.get("id", "")
        compiled = self._compiled(mid)
        if compiled is None:
            body = messages(errors=[f"no milestone {mid!r} on this worker"], title="Not found")
            if notice:
                body = messages(notice=notice) + body
            return self._page(f"Milestone {mid}", body, "milestones", 200 if notice else 404)
        d = compiled.definition
        now = self.clock()
        timeline_status, activity = status(d, now)
        summary = table(
            ["Field", "Value"],
            [
                ["Id", f"<code>{h(d.milestone_id)}</code>"],
                ["Name", h(d.name)],
                ["Organisation", h(d.org_id)],
                ["Status", pill(timeline_status) + " " + pill(activity)],
                ["Runs", f"{h(d.starts_at.isoformat())} → {h(d.ends_at.isoformat())} ({h(d.timezone)})"],
                ["Enrolment", h(d.enrolment.method)],
                [
                    "Group",
                    h(
                        f"{d.group.condition}"
                        + (f", at least {d.group.min_targets}" if d.group.condition == "any" else "")
                    ),
                ],
                ["Leaderboard", "on" if compiled.settings.leaderboard else "off"],
                ["Description", h(d.description)],
            ],
        )
        toggle = "false" if d.active else "true"
        actions = (
            f'<form method="post" action="/console/status" class="inline">'
            f'<input type="hidden" name="milestone_id" value="{h(mid)}">'
            f'<input type="hidden" name="active" value="{toggle}">'
            f'<button id="toggle-status">{"Deactivate" if d.active else "Activate"}</button></form> '
            f'<a href="{link(CONSOLE + "/edit", id=mid)}" id="edit">Edit definition</a>'
            + (
                f' · <a href="{link(CONSOLE + "/leaderboards", milestone=mid)}">Leaderboard</a>'
                if compiled.settings.leaderboard
                else ""
            )
        )
        clone = (
            '<form method="post" action="/console/clone" class="card">'
            f'<input type="hidden" name="source" value="{h(mid)}"><h3>Clone</h3>'
            '<label for="clone-id">New id</label><input name="milestone_id" id="clone-id" required>'
            f'<label for="clone-name">Name</label><input name="name" id="clone-name" value="{h(d.name)} (copy)" '
            'size="40" required><label for="clone-enrolment">Enrolment</label>'
            '<select name="enrolment" id="clone-enrolment"><option>none</option><option>all</option></select>'
            '<label for="clone-changes">Changes (JSON merge patch, optional)</label>'
            '<textarea name="changes" id="clone-changes" style="min-height:60px">{}</textarea>'
            '<p><button id="clone">Clone</button></p></form>'
        )
        body = (
            messages(notice, errors or [])
            + f'<p>{actions}</p><div class="grid"><div>{summary}</div><div>'
            + f"<h2>Cycles</h2><p>{h(cycles_text(d))}</p>{timeline(d, now)}"
            + "<h2>Targets</h2><ul>"
            + "".join(f"<li>{target_text(t)}</li>" for t in compiled.targets)
            + f"</ul>{clone}</div></div>"
        )
        return self._page(d.name, body, "milestones")

    async def editor(self, request: Any) -> Any:
        mid = request.query.get("id", "")
        compiled = self._compiled(mid) if mid else None
        text = definition_json(compiled.definition) if compiled else starter_definition(self.clock())
        return self._editor_page(mid, text)

    def _editor_page(self, mid: str, text: str, notice: str = "", errors: list[str] | None = None) -> Any:
        errors = errors or []
        field_errors = (
            '<ul class="field-errors" id="definition-errors">' + "".join(f"<li>{h(e)}</li>" for e in errors) + "</ul>"
            if errors
            else ""
        )
        body = (
            messages(notice, errors, "The API refused the definition" if errors else None)
            + '<form method="post" action="/console/edit" class="card">'
            '<label for="milestone-id">Milestone id</label>'
            f'<input name="milestone_id" id="milestone-id" value="{h(mid)}" size="40" '
            'placeholder="default: the definition\'s milestone_id">'
            '<label for="definition">Definition (JSON, as on the definitions topic)</label>'
            f"{field_errors}"
            f'<textarea name="definition" id="definition" spellcheck="false">{h(text)}</textarea>'
            '<p><button type="submit" id="publish">Validate and publish</button> '
            '<span class="muted">The API checks it with the engine\'s rules; nothing is published if it refuses.'
            "</span></p></form>"
        )
        return self._page("Edit milestone" if mid else "New milestone", body, "milestones")

    async def publish(self, request: Any) -> Any:
        form = await request.post()
        text = str(form.get("definition", ""))
        mid = str(form.get("milestone_id", "")).strip()
        if not mid:
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            mid = str(parsed.get("milestone_id", "")) if isinstance(parsed, dict) else ""
        if not mid:
            return self._editor_page(mid, text, errors=["give a milestone id (or a milestone_id in the definition)"])
        code, answer = await self.client.call("PUT", path("milestones", mid), raw=text.encode())
        if code != 202:
            return self._editor_page(mid, text, errors=reasons(answer))
        notice = (
            f"Accepted: {mid} is on the definitions topic (partition {answer.get('partition')}, "
            f"offset {answer.get('offset')}); the workers apply it in a moment."
        )
        return self._editor_page(mid, text, notice=notice)

    async def set_status(self, request: Any) -> Any:
        form = await request.post()
        mid = str(form.get("milestone_id", ""))
        active = str(form.get("active", "")) == "true"
        code, answer = await self.client.call("POST", path("milestones", mid, "status"), {"active": active})
        if code != 202:
            return await self.milestone(request, errors=reasons(answer), milestone_id=mid)
        word = "activation" if active else "deactivation"
        notice = f"Accepted: the {word} of {mid} is on the definitions topic; the workers apply it in a moment."
        return await self.milestone(request, notice=notice, milestone_id=mid)

    async def clone(self, request: Any) -> Any:
        form = await request.post()
        source = str(form.get("source", ""))
        try:
            changes = orjson.loads(str(form.get("changes", "") or "{}"))
        except orjson.JSONDecodeError as exc:
            return await self.milestone(request, errors=[f"changes: not JSON ({exc})"], milestone_id=source)
        body = {
            "milestone_id": str(form.get("milestone_id", "")),
            "name": str(form.get("name", "")),
            "enrolment": {"method": str(form.get("enrolment", "none"))},
            "changes": changes,
        }
        code, answer = await self.client.call("POST", path("milestones", source, "clone"), body)
        if code != 202:
            return await self.milestone(request, errors=reasons(answer), milestone_id=source)
        notice = f"Accepted: the clone {body['milestone_id']} of {source} is on the definitions topic."
        return await self.milestone(request, notice=notice, milestone_id=source)

    # --------------------------------------------------------------- customer
    async def customer(self, request: Any) -> Any:
        cid = request.query.get("id", "").strip()
        org = request.query.get("org", "").strip()
        search = (
            '<form method="get" action="/console/customer" class="card">'
            f'<label for="customer-id">Customer id</label><input name="id" id="customer-id" value="{h(cid)}" size="40">'
            f' <input name="org" placeholder="organisation (default)" value="{h(org)}"> '
            '<button id="search">Show</button></form>'
        )
        if not cid:
            return self._page("Customer", search, "customer")
        code, answer = await self.client.get(path("customers", cid, "milestones", org_id=org))
        if code != 200:
            return self._page(
                f"Customer {cid}", search + messages(errors=reasons(answer), title="No progress"), "customer"
            )
        parts = [search, f"<p>Partition {h(answer.get('partition'))}, as of {when(answer.get('as_of'))} UTC</p>"]
        if not answer.get("milestones"):
            parts.append('<p class="muted">This customer is in no milestone.</p>')
        for progress in answer.get("milestones", []):
            mid = progress["milestone_id"]
            hist_code, hist = await self.client.get(path("customers", cid, "milestones", mid, "history", org_id=org))
            parts.append(self._customer_milestone(cid, progress, hist if hist_code == 200 else None))
        lb_code, boards = await self.client.get(path("leaderboards", "customers", cid, org_id=org))
        if lb_code == 200:
            parts.append("<h2>Leaderboard ranks</h2>" + standings_table(boards.get("standings", [])))
        return self._page(f"Customer {cid}", "".join(parts), "customer")

    def _customer_milestone(self, cid: str, progress: dict[str, Any], hist: dict[str, Any] | None) -> str:
        mid = progress["milestone_id"]
        enrolment = progress.get("enrolment") or {}
        head = (
            f'<div class="card customer-milestone" data-milestone-id="{h(mid)}">'
            f"<h2>{h(progress.get('name'))} <code>{h(mid)}</code> {pill(progress.get('status', ''))} "
            f"{pill('active' if progress.get('active') else 'inactive')}</h2>"
            f'<p class="muted">Enrolment: {h(enrolment.get("method"))}'
            + (f", since {when(enrolment.get('enrolled_at'))}" if enrolment.get("enrolled_at") else "")
            + "</p>"
        )
        cycles = progress.get("open_cycles") or ([progress["current_cycle"]] if progress.get("current_cycle") else [])
        body = "".join(cycle_block(c) for c in cycles) or '<p class="muted">No open cycle.</p>'
        closed = progress.get("closed_cycles") or []
        if closed:
            body += "<h3>Closed cycles</h3>" + table(
                ["Cycle", "Values", "Achieved"],
                [
                    [
                        h(f"#{c['index']} {c['name']}"),
                        h(", ".join(f"{k}: {v}" for k, v in c.get("values", {}).items())),
                        h(", ".join(c.get("achievements", []))),
                    ]
                    for c in closed
                ],
            )
        if hist is not None:
            rows = []
            for cycle in hist.get("cycles", []):
                for item in cycle.get("contributions", []):
                    source = item.get("source") or {}
                    deltas = dict(item.get("deltas") or {})
                    carried = item.get("carried") or {}
                    change = ", ".join(f"{k}: {'' if str(v).startswith('-') else '+'}{v}" for k, v in deltas.items())
                    if carried:
                        change += " (carried: " + ", ".join(f"cycle {c}: {v}" for c, v in carried.items()) + ")"
                    rows.append(
                        [
                            h(cycle.get("cycle")),
                            when(item.get("event_time")),
                            h(item.get("type")),
                            f"<code>{h(item.get('event_id'))}</code>",
                            h(change) + (" " + pill("late") if item.get("late") else ""),
                            h(f"{source.get('topic')}/{source.get('partition')}@{source.get('offset')}"),
                        ]
                    )
            body += "<h3>Why progress changed</h3>" + table(
                ["Cycle", "Event time (UTC)", "Type", "Event id", "Change", "Source"],
                rows[:HISTORY_ROWS],
                empty="No history kept for this milestone.",
                cls="history",
            )
        return head + body + "</div>"

    # ----------------------------------------------------------- leaderboards
    async def leaderboards(self, request: Any) -> Any:
        boards = {mid: c for mid, c in sorted(self.topology.registry.milestones.items()) if c.settings.leaderboard}
        mid = request.query.get("milestone", "") or next(iter(boards), "")
        target = request.query.get("target", "")
        cycle = request.query.get("cycle", "")
        top = request.query.get("top", "10")
        cid = request.query.get("customer", "").strip()
        options = "".join(
            f'<option value="{h(m)}"{" selected" if m == mid else ""}>{h(c.definition.name)} ({h(m)})</option>'
            for m, c in boards.items()
        )
        compiled = boards.get(mid)
        target_ids = (
            [t.target_id for t in compiled.targets] + ([] if compiled.single_target else ["group"]) if compiled else []
        )
        target_options = '<option value="">(headline)</option>' + "".join(
            f"<option{' selected' if t == target else ''}>{h(t)}</option>" for t in target_ids
        )
        form = (
            '<form method="get" action="/console/leaderboards" class="card">'
            f'Milestone <select name="milestone" id="board-milestone">{options}</select> '
            f'Target <select name="target">{target_options}</select> '
            f'Cycle <input name="cycle" value="{h(cycle)}" size="4" placeholder="now"> '
            f'Top <input name="top" value="{h(top)}" size="4"> '
            f'Customer <input name="customer" value="{h(cid)}" placeholder="their ranks"> '
            "<button>Show</button></form>"
        )
        parts = [form]
        if not boards:
            parts.append('<p class="muted">No milestone has its leaderboard setting on.</p>')
        elif mid:
            code, answer = await self.client.get(path("leaderboards", mid, target=target, cycle=cycle, top=top or "10"))
            if code == 200:
                rows = [
                    [h(e["rank"]), a(e["customer_id"], f"{CONSOLE}/customer", id=e["customer_id"]), h(e["value"])]
                    for e in answer.get("entries", [])
                ]
                parts.append(
                    f"<h2>Top {h(answer.get('top'))} of {h(mid)}: target {h(answer.get('target_id'))}, "
                    f"cycle {h(answer.get('cycle'))}</h2>"
                    + table(["#Rank", "Customer", "#Value"], rows, empty="Nobody ranked yet.", cls="leaderboard")
                )
            else:
                parts.append(messages(errors=reasons(answer), title="No leaderboard"))
        if cid:
            code, answer = await self.client.get(path("leaderboards", "customers", cid, milestone_id=mid))
            parts.append(f"<h2>Ranks of {h(cid)}</h2>")
            parts.append(
                standings_table(answer.get("standings", []))
                if code == 200
                else messages(errors=reasons(answer), title="No ranks")
            )
        return self._page("Leaderboards", "".join(parts), "leaderboards")

    # ------------------------------------------------------------- operations
    async def operations(self, request: Any) -> Any:
        reason = request.query.get("reason", "")
        parts = []
        lag = tails.consumer_lag()
        total = sum(v for _, _, v in lag)
        parts.append(
            f"<h2>Consumer lag</h2><p>{h(f'{total:g}')} records behind on this worker's partitions "
            "(<code>milestream_consumer_lag</code>).</p>"
            + table(
                ["Topic", "#Partition", "#Lag"],
                [[h(t), h(p), h(f"{v:g}")] for t, p, v in lag],
                empty="No partition assigned to this worker yet.",
                cls="lag",
            )
        )
        letters, error = await self._tail(self.topology.dead_letters)
        counts: dict[str, int] = {}
        for r in letters:
            key = r.value.get("reason", "?") if isinstance(r.value, dict) else "?"
            counts[key] = counts.get(key, 0) + 1
        by_reason = " ".join(
            a(f"{k} ({n})", f"{CONSOLE}/operations", reason=k) for k, n in sorted(counts.items(), key=lambda kv: -kv[1])
        )
        shown = [r for r in letters if not reason or (isinstance(r.value, dict) and r.value.get("reason") == reason)]
        parts.append(
            f"<h2>Dead letters</h2><p>The last {tails.PER_PARTITION} of each partition of "
            f"<code>{h(self.topology.dead_letters)}</code>, newest first. By reason: {by_reason or 'none'}"
            + (f' · <a href="/console/operations">all</a> (showing {h(reason)})' if reason else "")
            + "</p>"
            + (messages(errors=[error], title="Could not read the topic") if error else "")
            + table(
                ["Failed at (UTC)", "Reason", "Detail", "Source", "Key", "Original value"],
                [dead_letter_row(r) for r in shown],
                empty="No dead letters.",
                cls="dead-letters",
            )
        )
        late, error = await self._tail(self.topology.late_topic)
        parts.append(
            f"<h2>Late events</h2><p>The last {tails.PER_PARTITION} of each partition of "
            f"<code>{h(self.topology.late_topic)}</code>: events after their cycle's buffer days, counted nowhere.</p>"
            + (messages(errors=[error], title="Could not read the topic") if error else "")
            + table(
                ["Recorded (UTC)", "Customer", "Milestone", "Cycle", "Event", "Event time (UTC)", "Source"],
                [late_row(r) for r in late],
                empty="No late events.",
                cls="late-events",
            )
        )
        parts.append(
            '<h2>Backfills</h2><p id="backfills">None in progress: Milestream has no backfill job yet '
            "(replaying history is done with <code>milestream simulate</code>, outside the workers).</p>"
        )
        return self._page("Operations", "".join(parts), "operations")

    async def _tail(self, topic: str) -> tuple[list[tails.TailRecord], str]:
        try:
            return await tails.read_tail(self.settings, topic), ""
        except Exception as exc:  # the broker may be down: say so on the page
            return [], f"{type(exc).__name__}: {exc}"


def cycle_block(cycle: dict[str, Any]) -> str:
    ref = cycle.get("cycle") or {}
    out = (
        f"<h3>Cycle #{h(ref.get('index'))} {h(ref.get('name'))} "
        f'<span class="muted">{when(ref.get("start"))} → {when(ref.get("end"))} UTC</span></h3>'
    )
    for t in cycle.get("targets", []):
        out += progress_bar(t)
    group = cycle.get("group")
    if group:
        out += (
            f"<p>Group ({h(group['condition'])}): {h(group['targets_met'])} of {h(group['targets_required'])} "
            f"targets met {'✓ reached' if group.get('reached') else ''}</p>"
        )
    if cycle.get("achievements"):
        out += f'<p class="muted">Awarded: {h(", ".join(cycle["achievements"]))}</p>'
    return out


def progress_bar(target: dict[str, Any]) -> str:
    achieved = decimal(target.get("achieved")) or Decimal(0)
    defined = decimal(target.get("defined"))
    width = percent(achieved, defined) if defined is not None else 0.0
    marks = ""
    subs = []
    for sub in target.get("sub_targets", []):
        value = decimal(sub.get("value"))
        if value is not None and defined:
            left = percent(value, defined)
            cls = "mark reached" if sub.get("reached") else "mark"
            marks += f'<span class="{cls}" style="left:{left:.2f}%" title="{h(sub["name"])}: {h(sub["value"])}"></span>'
        subs.append(f"{sub['name']} {sub['value']}{' ✓' if sub.get('reached') else ''}")
    fill = "fill" if target.get("reached") else "fill short"
    shown = (
        f"{h(target.get('achieved'))} / {h(target.get('defined'))}"
        if defined is not None
        else h(target.get("achieved"))
    )
    return (
        f'<div class="target" data-target-id="{h(target.get("target_id"))}" '
        f'data-achieved="{h(target.get("achieved"))}" data-defined="{h(target.get("defined"))}">'
        f'<div><strong>{h(target.get("name"))}</strong> <span class="muted">{h(target.get("kpi"))}</span> '
        f'<span class="value">{shown}</span>'
        + (f" ({width:.0f} %)" if defined is not None else "")
        + (" ✓ reached" if target.get("reached") else "")
        + (" (own target)" if target.get("overridden") else "")
        + "</div>"
        + (
            f'<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="{width:.0f}">'
            f'<div class="{fill}" style="width:{width:.2f}%"></div>{marks}</div>'
            if defined is not None
            else ""
        )
        + (f'<div class="muted">Sub-targets: {h(", ".join(subs))}</div>' if subs else "")
        + "</div>"
    )


def standings_table(standings: list[dict[str, Any]]) -> str:
    rows = []
    for s in standings:
        around = [
            *s.get("above", []),
            {"rank": s["rank"], "customer_id": "(this customer)", "value": s["value"]},
            *s.get("below", []),
        ]
        rows.append(
            [
                a(s["milestone_id"], f"{CONSOLE}/leaderboards", milestone=s["milestone_id"], target=s["target_id"]),
                h(s["target_id"]),
                h(s["cycle"]),
                h(s["rank"]),
                h(s["value"]),
                h(" · ".join(f"{e['rank']}. {e['customer_id']} ({e['value']})" for e in around)),
            ]
        )
    return table(
        ["Milestone", "Target", "#Cycle", "#Rank", "#Value", "Around"],
        rows,
        empty="Not on any leaderboard.",
        cls="ranks",
    )


def dead_letter_row(record: tails.TailRecord) -> list[str]:
    letter = record.value if isinstance(record.value, dict) else {"detail": str(record.value)}
    value = tails.original_text(letter, "value_b64")
    size = letter.get("value_bytes")
    return [
        when(letter.get("failed_at")),
        pill(str(letter.get("reason", "?"))),
        f"<pre>{h(letter.get('detail'))}</pre>",
        h(f"{letter.get('source_topic')}[{letter.get('source_partition')}]@{letter.get('source_offset')}"),
        f"<code>{h(tails.original_text(letter, 'key_b64'))}</code>",
        f"<pre>{h(value)}</pre>"
        + (
            f'<span class="muted">{h(size)} bytes{", truncated" if letter.get("truncated") else ""}</span>'
            if size is not None
            else ""
        ),
    ]


def late_row(record: tails.TailRecord) -> list[str]:
    late = record.value if isinstance(record.value, dict) else {}
    customer = str(late.get("customer_id", ""))
    return [
        when(late.get("recorded_at")),
        a(customer, f"{CONSOLE}/customer", id=customer, org=late.get("org_id")),
        h(late.get("milestone_id")),
        h(late.get("cycle_index")),
        f"<code>{h(late.get('event_id'))}</code>",
        when(late.get("event_time")),
        h(late.get("source")),
    ]
