"""The console is a client of the worker's own HTTP API: it calls the API's routes on this
worker (which forwards to the partition's owner, or gathers a leaderboard from every worker),
with the worker's token, so the console reads and validates nothing itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ..settings import Settings
from ..worker.web import authorization_header


def local_base_url(settings: Settings) -> str:
    """This worker's web server, reached from inside it."""
    host = settings.web_host.strip() or "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.web_port}"


def path(*segments: str, **query: Any) -> str:
    """An API path from raw segments (each percent-encoded whole) and a query."""
    text = "/" + "/".join(quote(s, safe="") for s in segments)
    params = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return f"{text}?{urlencode(params)}" if params else text


class ApiClient:
    def __init__(self, settings: Settings, base_url: str | None = None, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.base_url = base_url or local_base_url(settings)
        self.timeout_s = timeout_s
        self._session: Any = None

    def _http(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, api_path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        """(status, decoded JSON); a worker that did not answer is a 503 with the reason."""
        import aiohttp
        from yarl import URL

        headers = {**authorization_header(self.settings), "Content-Type": "application/json"}
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        try:
            async with self._http().request(
                method, URL(self.base_url + api_path, encoded=True), data=data, headers=headers
            ) as response:
                payload = await response.read()
                try:
                    return response.status, orjson.loads(payload)
                except orjson.JSONDecodeError:
                    return response.status, {"error": payload.decode("utf-8", "replace")[:500]}
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 503, {"error": f"the API did not answer ({type(exc).__name__})"}

    async def get(self, api_path: str) -> tuple[int, Any]:
        return await self.call("GET", api_path)


def reasons(answer: Any) -> list[str]:
    """An ErrorResponse's reasons (its error when it has none)."""
    if not isinstance(answer, dict):
        return [str(answer)]
    listed = [str(r) for r in answer.get("reasons") or []]
    return listed or [str(answer.get("error", "unknown error"))]
