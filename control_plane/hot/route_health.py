"""The routes' health as the gateway nodes see it (tg:route_health:<node id>, written by nginx,
docs/internals.md): what `tollgate route list` shows. A route no node has a field for is healthy."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..settings import Settings
from . import redis_keys
from .connection import client

SCAN_PAGE = 1000


@dataclass(frozen=True)
class NodeView:
    """One node's state of a route: cooling (until until_ms), half_open or refused."""

    node: str
    state: str
    until_ms: int | None
    fails: int | None
    status: int | None  # the last failed attempt's


def route_views(settings: Settings, route_ids: list[int]) -> dict[int, list[NodeView]]:
    """Per route id, the views of the nodes that do not see it healthy, by node."""
    connection = client(settings)
    prefix = redis_keys.route_health("")
    names = sorted(connection.scan_iter(match=redis_keys.route_health("*"), count=SCAN_PAGE))
    views: dict[int, list[NodeView]] = {route_id: [] for route_id in route_ids}
    if not names or not route_ids:
        return views
    pipe = connection.pipeline(transaction=False)
    for name in names:
        pipe.hmget(name, [str(route_id) for route_id in route_ids])
    for name, values in zip(names, pipe.execute(), strict=True):
        for route_id, value in zip(route_ids, values, strict=True):
            if value is not None:
                views[route_id].append(_view(name[len(prefix):], value))
    return views


def _view(node: str, value: str) -> NodeView:
    """A node's field as written; one past its `until_ms` is half-open (nginx removes the field
    when the route's trial request succeeds). One that is not the documented JSON is shown as
    unreadable."""
    try:
        state = json.loads(value)
        name, until_ms = str(state["state"]), state.get("until_ms")
        if isinstance(until_ms, int) and until_ms <= time.time() * 1000:
            name = "half_open"
        return NodeView(node, name, until_ms, state.get("fails"), state.get("status"))
    except (ValueError, TypeError, KeyError):
        return NodeView(node, "unreadable", None, None, None)
