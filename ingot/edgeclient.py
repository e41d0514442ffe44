"""What the command-line clients share: where the edge is, and calls that turn HTTP errors into messages."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pydantic import Field

from ingot.common import settings


class ClientSettings(settings.SettingsBase):
    endpoint: str = Field("http://127.0.0.1:5272", description="base URL of a running ingot edge")


class CommandError(Exception):
    """Something to tell the user before exiting with status 1."""


def error_message(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}: {body.decode(errors='replace').strip()[:500]}"
    if isinstance(data, dict):
        if isinstance(data.get("error"), dict) and data["error"].get("message"):
            return str(data["error"]["message"])
        if data.get("errorMessage"):
            return str(data["errorMessage"])
    return f"HTTP {status}: {data}"


def open_endpoint(endpoint: str, method: str, path: str, *, query: dict[str, Any] | None = None,
          body: dict[str, Any] | None = None):
    url = endpoint.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        return urllib.request.urlopen(request)  # noqa: S310 - the URL is the user's own endpoint
    except urllib.error.HTTPError as exc:
        raise CommandError(error_message(exc.code, exc.read())) from None
    except urllib.error.URLError as exc:
        raise CommandError(f"cannot reach ingot at {endpoint}: {exc.reason} (is `ingot serve` running? "
                           "--endpoint / INGOT_ENDPOINT)") from None


def request_json(endpoint: str, method: str, path: str, **kwargs: Any) -> Any:
    with open_endpoint(endpoint, method, path, **kwargs) as response:
        text = response.read()
    return json.loads(text) if text.strip() else None
