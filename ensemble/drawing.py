"""Pictures of graphs and runs that need no web service and no extra dependency.

LangGraph's `draw_mermaid_png` sends the graph to a web service and `draw_png` needs graphviz;
neither works on an offline machine or in CI. Here a graph is laid out in pure Python (a small
layered layout) and written as standalone SVG, and a streamed run's progress events become an
HTML timing table. Results are `str` subclasses with `_repr_svg_` / `_repr_html_`, so a notebook
shows them as pictures while code can still treat them as text.
"""

from __future__ import annotations

import hashlib
import html
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

START_NODE = "__start__"
END_NODE = "__end__"

FONT_SIZE = 13
CHAR_WIDTH = 7.6
"""Approximate advance of one character at FONT_SIZE, so boxes fit their labels."""
NODE_HEIGHT = 34
RANK_GAP = 58
"""Vertical space between the bottom of one rank and the top of the next."""
NODE_GAP = 28
DUMMY_WIDTH = 14
"""Width reserved beside real nodes for an edge passing through a rank."""
MARGIN = 20
BULGE = 44
"""How far a loop or short back edge swings out beside the nodes it joins."""
EDGE_COLOR = "#555"
BACK_COLOR = "#7b5fc7"
NODE_FILL = "#f2f0ff"
NODE_STROKE = "#6c5fc7"
TERMINAL_FILL = "#e8f4ea"
TERMINAL_STROKE = "#4a8a5a"


class SVG(str):
    """SVG text that Jupyter displays as a picture and code can use as a string."""

    def _repr_svg_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"<SVG picture, {len(self)} characters>"


class HTML(str):
    """HTML text that Jupyter renders and code can use as a string."""

    def _repr_html_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"<HTML, {len(self)} characters>"


# --------------------------------------------------------------------------------------------
# Graph pictures


def graph_mermaid(compiled: Any) -> str:
    """Return the graph's mermaid text, for pasting into any mermaid renderer."""
    return compiled.get_graph().draw_mermaid()


def graph_svg(compiled: Any) -> SVG:
    """Draw a compiled graph as a standalone SVG picture.

    Nodes are ranked by their longest path from `__start__` (edges that close a cycle are set
    aside first), placed side by side within a rank, and edges spanning several ranks pass
    through reserved slots so they never run behind a node. Conditional edges are dashed; edges
    that go back up (review loops, retries) are drawn in a second colour and swing out to the
    side, so cycles stay visible. The layout is deterministic: the same graph gives the same
    text, which keeps notebooks and tests stable.

    Args:
        compiled: a compiled LangGraph graph, or anything with `get_graph()` returning a
            `langchain_core.runnables.graph.Graph`.
    """
    drawable = compiled.get_graph()
    names = [str(n) for n in drawable.nodes]
    edges = [
        _EdgeSpec(str(e.source), str(e.target), bool(e.conditional), _edge_label(e))
        for e in drawable.edges
    ]
    names += [
        n for n in dict.fromkeys(x for e in edges for x in (e.source, e.target)) if n not in names
    ]
    return SVG(_render(names, edges, str(getattr(compiled, "name", "") or "graph")))


def _edge_label(edge: Any) -> str:
    data = edge.data
    return str(data) if data is not None and str(data) != str(edge.target) else ""


@dataclass
class _EdgeSpec:
    source: str
    target: str
    conditional: bool
    label: str
    back: bool = False
    chain: list[str] = field(default_factory=list)
    """Layout items from the upper end to the lower end (dummies in between)."""


@dataclass
class _Item:
    key: str
    rank: int
    width: float
    real: bool
    x: float = 0.0
    loop_room: float = 0.0
    """Extra space kept beside a node with a self-loop, so the loop clears its neighbours."""


class _Bounds:
    """Running bounding box of everything drawn, so the viewBox fits loops and bulges."""

    def __init__(self) -> None:
        self.x0 = self.y0 = float("inf")
        self.x1 = self.y1 = float("-inf")

    def add(self, x: float, y: float) -> None:
        self.x0, self.x1 = min(self.x0, x), max(self.x1, x)
        self.y0, self.y1 = min(self.y0, y), max(self.y1, y)


def _node_width(name: str) -> float:
    return max(72.0, len(name) * CHAR_WIDTH + 28)


def _back_edges(names: list[str], edges: list[_EdgeSpec]) -> None:
    """Mark edges that close a cycle (DFS from `__start__`, then every unvisited node)."""
    out: dict[str, list[_EdgeSpec]] = {n: [] for n in names}
    for e in edges:
        out.setdefault(e.source, []).append(e)
        out.setdefault(e.target, [])
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    roots = ([START_NODE] if START_NODE in out else []) + list(out)
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            if i == len(out[node]):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, i + 1)
            edge = out[node][i]
            seen = state.get(edge.target)
            if seen == 1:
                edge.back = True
            elif seen is None:
                state[edge.target] = 1
                stack.append((edge.target, 0))


def _ranks(names: list[str], edges: list[_EdgeSpec]) -> dict[str, int]:
    """Longest-path ranks over the acyclic edges (back edges reversed, loops ignored)."""
    order = {n: i for i, n in enumerate(names)}
    succ: dict[str, list[str]] = {n: [] for n in names}
    indeg = dict.fromkeys(names, 0)
    for e in edges:
        if e.source == e.target:
            continue
        a, b = (e.target, e.source) if e.back else (e.source, e.target)
        succ[a].append(b)
        indeg[b] += 1
    rank = dict.fromkeys(names, 0)
    ready = sorted((n for n in names if indeg[n] == 0), key=order.__getitem__)
    while ready:
        node = ready.pop(0)
        for nxt in succ[node]:
            rank[nxt] = max(rank[nxt], rank[node] + 1)
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
                ready.sort(key=order.__getitem__)
    if END_NODE in rank and len(rank) > 1:
        lowest = max(r for n, r in rank.items() if n != END_NODE)
        if rank[END_NODE] <= lowest and not succ[END_NODE]:
            rank[END_NODE] = lowest + 1
    return rank


def _crossings(upper: list[str], lower: list[str], links: list[tuple[str, str]]) -> int:
    up = {k: i for i, k in enumerate(upper)}
    low = {k: i for i, k in enumerate(lower)}
    segs = [(up[a], low[b]) for a, b in links if a in up and b in low]
    return sum(
        1
        for i, (a1, b1) in enumerate(segs)
        for a2, b2 in segs[i + 1 :]
        if (a1 - a2) * (b1 - b2) < 0
    )


def _layout(names: list[str], edges: list[_EdgeSpec]) -> tuple[dict[str, _Item], int]:
    """Assign every node (and every dummy of a long edge) a rank and an x position."""
    _back_edges(names, edges)
    rank = _ranks(names, edges)
    items = {n: _Item(n, rank[n], _node_width(n), True) for n in names}
    for e in edges:
        if e.source == e.target:
            items[e.source].loop_room = BULGE * 0.8
    links: list[tuple[str, str]] = []  # (upper item, lower item), one rank apart
    for i, e in enumerate(edges):
        if e.source == e.target:
            continue
        a, b = (e.target, e.source) if e.back else (e.source, e.target)
        chain = [a]
        for r in range(rank[a] + 1, rank[b]):
            key = f"~{i}:{r}"
            items[key] = _Item(key, r, DUMMY_WIDTH, False)
            chain.append(key)
        chain.append(b)
        e.chain = chain
        links.extend(zip(chain, chain[1:], strict=False))
    depth = max((it.rank for it in items.values()), default=0)
    layers: list[list[str]] = [[] for _ in range(depth + 1)]
    for key, it in items.items():  # names first (insertion order), then dummies by edge
        layers[it.rank].append(key)
    ups: dict[str, list[str]] = {k: [] for k in items}
    downs: dict[str, list[str]] = {k: [] for k in items}
    for a, b in links:
        downs[a].append(b)
        ups[b].append(a)

    _order(layers, ups, downs, links)
    _place(layers, items, ups, downs)
    return items, depth


def _order(
    layers: list[list[str]],
    ups: dict[str, list[str]],
    downs: dict[str, list[str]],
    links: list[tuple[str, str]],
) -> None:
    """Barycenter sweeps to reduce crossings; keeps the best order seen (ties: the earliest)."""

    def sweep(r: int, neighbours: dict[str, list[str]], ref: list[str]) -> None:
        pos = {k: i for i, k in enumerate(ref)}
        own = {k: i for i, k in enumerate(layers[r])}

        def key(k: str) -> tuple[float, int]:
            near = [pos[n] for n in neighbours[k] if n in pos]
            return (sum(near) / len(near) if near else float(own[k]), own[k])

        layers[r].sort(key=key)

    def total() -> int:
        return sum(_crossings(layers[r], layers[r + 1], links) for r in range(len(layers) - 1))

    best, best_count = [list(layer) for layer in layers], total()
    for _ in range(4):
        for r in range(1, len(layers)):
            sweep(r, ups, layers[r - 1])
        for r in range(len(layers) - 2, -1, -1):
            sweep(r, downs, layers[r + 1])
        count = total()
        if count < best_count:
            best, best_count = [list(layer) for layer in layers], count
    layers[:] = best


def _place(
    layers: list[list[str]],
    items: dict[str, _Item],
    ups: dict[str, list[str]],
    downs: dict[str, list[str]],
) -> None:
    """Pull each item toward its neighbours' mean x, then push apart to the minimum gaps.

    The push is the mean of a left-to-right and a right-to-left pass; each pass alone satisfies
    every gap, so their mean does too, and neither side of a rank is favoured.
    """

    def gap(a: str, b: str) -> float:
        ia, ib = items[a], items[b]
        space = NODE_GAP if ia.real and ib.real else NODE_GAP / 2
        return (ia.width + ib.width) / 2 + space + ia.loop_room + ib.loop_room

    for layer in layers:
        x = 0.0
        for i, key in enumerate(layer):
            x += gap(layer[i - 1], key) if i else 0.0
            items[key].x = x
        shift = x / 2
        for key in layer:
            items[key].x -= shift

    def settle(layer: list[str], neighbours: dict[str, list[str]]) -> None:
        want = []
        for key in layer:
            near = [items[n].x for n in neighbours[key]]
            want.append(sum(near) / len(near) if near else items[key].x)
        left = list(want)
        for i in range(1, len(layer)):
            left[i] = max(want[i], left[i - 1] + gap(layer[i - 1], layer[i]))
        right = list(want)
        for i in range(len(layer) - 2, -1, -1):
            right[i] = min(want[i], right[i + 1] - gap(layer[i], layer[i + 1]))
        for key, lx, rx in zip(layer, left, right, strict=True):
            items[key].x = (lx + rx) / 2

    for _ in range(6):
        for layer in layers[1:]:
            settle(layer, ups)
        for layer in reversed(layers[:-1]):
            settle(layer, downs)
    for layer in layers[1:]:
        settle(layer, ups)


def _rank_y(rank: int) -> float:
    return rank * (NODE_HEIGHT + RANK_GAP) + NODE_HEIGHT / 2


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _spread(count: int, room: float, step: float) -> list[float]:
    """Offsets of `count` ports centred on 0, at most `step` apart and within `room`."""
    if count <= 1:
        return [0.0] * count
    pitch = min(step, room / (count - 1))
    return [(i - (count - 1) / 2) * pitch for i in range(count)]


def _render(names: list[str], edges: list[_EdgeSpec], title: str) -> str:
    if not names:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
            f'<title>{html.escape(title)}</title><text x="10" y="24">(empty graph)</text></svg>'
        )
    items, _depth = _layout(names, edges)
    bounds = _Bounds()
    uid = (
        "g"
        + hashlib.sha1(
            repr((names, [(e.source, e.target, e.conditional) for e in edges])).encode()
        ).hexdigest()[:8]
    )

    def pos(key: str) -> tuple[float, float]:
        it = items[key]
        return it.x, _rank_y(it.rank)

    # Ports: forward edges leave a node's bottom and enter the next node's top, spread out by
    # where they head; back edges and self-loops use a side, spread vertically.
    bottom: dict[str, list[tuple[float, int]]] = {n: [] for n in names}
    top: dict[str, list[tuple[float, int]]] = {n: [] for n in names}
    sides: dict[tuple[str, int], list[tuple[float, int, str]]] = {}
    side_of: dict[int, int] = {}
    for i, e in enumerate(edges):
        if e.source == e.target or e.back:
            continue
        bottom[e.source].append((items[e.chain[1]].x, i))
        top[e.target].append((items[e.chain[-2]].x, i))
    for i, e in enumerate(edges):
        if not e.back or e.source == e.target:
            continue
        via_x = [items[k].x for k in e.chain[1:-1]] or [items[e.source].x + 1]
        side = 1 if sum(via_x) / len(via_x) >= items[e.source].x else -1
        side_of[i] = side
        sides.setdefault((e.source, side), []).append((-_rank_y(items[e.target].rank), i, "out"))
        sides.setdefault((e.target, side), []).append((_rank_y(items[e.source].rank), i, "in"))
    for i, e in enumerate(edges):
        if e.source != e.target:
            continue
        used = {s: len(sides.get((e.source, s), [])) for s in (1, -1)}
        side = 1 if used[1] <= used[-1] else -1
        side_of[i] = side
        sides.setdefault((e.source, side), []).extend([(0.0, i, "out"), (0.1, i, "in")])

    port: dict[tuple[int, str], tuple[float, float]] = {}
    for name in names:
        x, y = pos(name)
        w = items[name].width
        for group, dy, role in (
            (bottom[name], NODE_HEIGHT / 2, "out"),
            (top[name], -NODE_HEIGHT / 2, "in"),
        ):
            group.sort()
            for (_, i), off in zip(group, _spread(len(group), w * 0.6, 16), strict=True):
                port[(i, role)] = (x + off, y + dy)
    for (name, side), side_ports in sides.items():
        x, y = pos(name)
        side_ports.sort()
        room = _spread(len(side_ports), NODE_HEIGHT - 10, 12)
        for (_, i, role), off in zip(side_ports, room, strict=True):
            port[(i, role)] = (x + side * items[name].width / 2, y + off)

    parts_edges: list[str] = []
    parts_labels: list[str] = []
    for i, e in enumerate(edges):
        color = BACK_COLOR if e.back or e.source == e.target else EDGE_COLOR
        marker = f"{uid}-arrow-back" if color == BACK_COLOR else f"{uid}-arrow"
        if e.source == e.target:
            side = side_of[i]
            (x0, y0), (x1, y1) = port[(i, "out")], port[(i, "in")]
            reach = side * BULGE
            d = (
                f"M{_fmt(x0)},{_fmt(y0)} C{_fmt(x0 + reach)},{_fmt(y0 - 22)} "
                f"{_fmt(x1 + reach)},{_fmt(y1 + 22)} {_fmt(x1)},{_fmt(y1)}"
            )
            for px, py in ((x0, y0), (x0 + reach, y0 - 22), (x1 + reach, y1 + 22)):
                bounds.add(px, py)
            mid = (x0 + reach * 0.75, (y0 + y1) / 2)
        elif e.back:
            side = side_of[i]
            via = [pos(k) for k in reversed(e.chain[1:-1])]
            pts = [port[(i, "out")], *via, port[(i, "in")]]
            d, mid = _back_path(pts, side, bounds)
        else:
            via = [pos(k) for k in e.chain[1:-1]]
            pts = [port[(i, "out")], *via, port[(i, "in")]]
            d, mid = _down_path(pts, bounds)
        dash = ' stroke-dasharray="6 4"' if e.conditional else ""
        kind = "edge conditional" if e.conditional else "edge"
        if e.back or e.source == e.target:
            kind += " back"
        parts_edges.append(
            f'<g class="{kind}"><title>{html.escape(e.source)} \u2192 '
            f'{html.escape(e.target)}</title><path d="{d}" fill="none" stroke="{color}" '
            f'stroke-width="1.5"{dash} marker-end="url(#{marker})"/></g>'
        )
        if e.label:
            # Labels sit outside a loop's bulge, on the side it swings to.
            toward = side_of.get(i, 1)
            anchor = "start" if toward > 0 else "end"
            lx, ly = mid[0] + toward * 6, mid[1] + 4
            parts_labels.append(
                f'<text x="{_fmt(lx)}" y="{_fmt(ly)}" text-anchor="{anchor}" font-size="11" '
                f'fill="{color}" stroke="#fff" stroke-width="3" paint-order="stroke">'
                f"{html.escape(e.label)}</text>"
            )
            bounds.add(lx + toward * len(e.label) * 6.5, ly)

    parts_nodes: list[str] = []
    for name in names:
        x, y = pos(name)
        w, h = items[name].width, NODE_HEIGHT
        terminal = name in (START_NODE, END_NODE)
        fill, stroke = (TERMINAL_FILL, TERMINAL_STROKE) if terminal else (NODE_FILL, NODE_STROKE)
        radius = h / 2 if terminal else 6
        bounds.add(x - w / 2, y - h / 2)
        bounds.add(x + w / 2, y + h / 2)
        parts_nodes.append(
            f'<g class="node"><title>{html.escape(name)}</title>'
            f'<rect x="{_fmt(x - w / 2)}" y="{_fmt(y - h / 2)}" width="{_fmt(w)}" '
            f'height="{_fmt(h)}" rx="{_fmt(radius)}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.5"/><text x="{_fmt(x)}" y="{_fmt(y + FONT_SIZE * 0.35)}" '
            f'text-anchor="middle">{html.escape(name)}</text></g>'
        )

    x0, y0 = bounds.x0 - MARGIN, bounds.y0 - MARGIN
    width, height = bounds.x1 - bounds.x0 + 2 * MARGIN, bounds.y1 - bounds.y0 + 2 * MARGIN
    defs = "".join(
        f'<marker id="{uid}-{mid_}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{color}"/></marker>'
        for mid_, color in (("arrow", EDGE_COLOR), ("arrow-back", BACK_COLOR))
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="{_fmt(x0)} {_fmt(y0)} {_fmt(width)} {_fmt(height)}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="{FONT_SIZE}" fill="#222">'
        f"<title>{html.escape(title)}</title><defs>{defs}</defs>"
        f'<rect x="{_fmt(x0)}" y="{_fmt(y0)}" width="{_fmt(width)}" height="{_fmt(height)}" '
        f'fill="#fff"/>' + "".join(parts_edges + parts_nodes + parts_labels) + "</svg>"
    )


def _down_path(pts: list[tuple[float, float]], bounds: _Bounds) -> tuple[str, tuple[float, float]]:
    """A downward path through `pts`, each piece a cubic with vertical ends (smooth joins)."""
    d = [f"M{_fmt(pts[0][0])},{_fmt(pts[0][1])}"]
    bounds.add(*pts[0])
    for (xa, ya), (xb, yb) in zip(pts, pts[1:], strict=False):
        half = (yb - ya) / 2
        d.append(
            f"C{_fmt(xa)},{_fmt(ya + half)} {_fmt(xb)},{_fmt(yb - half)} {_fmt(xb)},{_fmt(yb)}"
        )
        bounds.add(xb, yb)
    return " ".join(d), _middle(pts)


def _back_path(
    pts: list[tuple[float, float]], side: int, bounds: _Bounds
) -> tuple[str, tuple[float, float]]:
    """An upward path leaving and entering node sides, swinging out by BULGE at both ends."""
    (xa, ya), (xb, yb) = pts[0], pts[-1]
    bounds.add(xa, ya)
    if len(pts) == 2:
        reach = side * BULGE
        bounds.add(xa + reach, ya)
        bounds.add(xb + reach, yb)
        d = (
            f"M{_fmt(xa)},{_fmt(ya)} C{_fmt(xa + reach)},{_fmt(ya)} "
            f"{_fmt(xb + reach)},{_fmt(yb)} {_fmt(xb)},{_fmt(yb)}"
        )
        return d, (
            max(xa, xb) + reach * 0.75 if side > 0 else min(xa, xb) + reach * 0.75,
            (ya + yb) / 2,
        )
    segs = [f"M{_fmt(xa)},{_fmt(ya)}"]
    first, last = pts[1], pts[-2]
    reach = side * BULGE
    segs.append(
        f"C{_fmt(xa + reach)},{_fmt(ya)} {_fmt(first[0])},{_fmt((ya + first[1]) / 2)} "
        f"{_fmt(first[0])},{_fmt(first[1])}"
    )
    for (x1, y1), (x2, y2) in zip(pts[1:-2], pts[2:-1], strict=False):
        half = (y1 - y2) / 2
        segs.append(
            f"C{_fmt(x1)},{_fmt(y1 - half)} {_fmt(x2)},{_fmt(y2 + half)} {_fmt(x2)},{_fmt(y2)}"
        )
    segs.append(
        f"C{_fmt(last[0])},{_fmt((last[1] + yb) / 2)} {_fmt(xb + reach)},{_fmt(yb)} "
        f"{_fmt(xb)},{_fmt(yb)}"
    )
    bounds.add(xa + reach, ya)
    bounds.add(xb + reach, yb)
    for p in pts:
        bounds.add(*p)
    return " ".join(segs), _middle(pts[1:-1])


def _middle(pts: list[tuple[float, float]]) -> tuple[float, float]:
    if len(pts) % 2:
        return pts[len(pts) // 2]
    (xa, ya), (xb, yb) = pts[len(pts) // 2 - 1], pts[len(pts) // 2]
    return (xa + xb) / 2, (ya + yb) / 2


# --------------------------------------------------------------------------------------------
# Run timings


async def collect_timings(
    graph: Any, input: Any, config: Mapping[str, Any], context: Any = None
) -> tuple[dict[str, Any] | None, list[tuple[float, dict[str, Any]]]]:
    """Run `graph` while timing every progress event it emits.

    Streams `custom` (the agents' progress events) and `updates` (so an interrupt ends the
    stream the same way it ends a CLI run), stamping each progress event with
    `time.monotonic()` as it arrives: the stamps measure what a watcher sees, queueing included.

    Args:
        graph: a compiled graph.
        input: the run's input, or a `Command` to resume.
        config: the run config (with a `thread_id` when the graph has a checkpointer).
        context: the run context (`ensemble.context.Context`), if any.

    Returns:
        The state values after the run (read from the checkpointer; None without one) and the
        `(monotonic time, event)` pairs to hand to `timings_table`.
    """
    events: list[tuple[float, dict[str, Any]]] = []
    async for mode, chunk in graph.astream(
        input, config, context=context, stream_mode=["custom", "updates"]
    ):
        if mode == "custom" and isinstance(chunk, Mapping):
            events.append((time.monotonic(), dict(chunk)))
    if getattr(graph, "checkpointer", None) is None:
        return None, events
    snapshot = await graph.aget_state(config)
    return dict(snapshot.values), events


@dataclass
class _Span:
    agent: str
    task: str
    start: float
    end: float | None = None
    status: str = "running"
    seen_start: bool = True


def timings_table(events: Iterable[tuple[float, Mapping[str, Any]]]) -> HTML:
    """Turn timed progress events into an HTML table: one row per agent run.

    A `started` event opens a row for (agent, task); the next `finished` or `failed` for the
    same pair closes it. Agents that report only when done (no `started`) get a row without a
    duration rather than a misleading zero. Times are relative to the first event.

    Args:
        events: `(time.monotonic(), event)` pairs as returned by `collect_timings`; events
            without an `agent` are ignored.
    """
    spans: list[_Span] = []
    open_spans: dict[tuple[str, str], _Span] = {}
    origin: float | None = None
    for stamp, event in events:
        if not isinstance(event, Mapping) or "agent" not in event:
            continue
        origin = stamp if origin is None else origin
        key = (str(event["agent"]), str(event.get("task") or ""))
        status = str(event.get("status", ""))
        span = open_spans.get(key)
        if status == "started" or span is None:
            span = _Span(*key, start=stamp, seen_start=status in ("started", "waiting"))
            spans.append(span)
            open_spans[key] = span
        if status in ("finished", "failed"):
            span.end, span.status = stamp, status
            del open_spans[key]
        elif status == "waiting":
            span.status = "waiting"
    if origin is None:
        return HTML("<p><em>No progress events.</em></p>")
    last = max(max(s.start, s.end or s.start) for s in spans)
    total = max(last - origin, 1e-9)
    rows = []
    for s in spans:
        begin = s.start - origin
        took = (s.end - s.start) if (s.end is not None and s.seen_start) else None
        left = begin / total * 100
        width = max((took or 0.0) / total * 100, 0.6)
        bar = (
            f'<div style="position:relative;width:160px;height:10px;background:#eee">'
            f'<div style="position:absolute;left:{min(left, 99.4):.1f}%;width:{width:.1f}%;'
            f'height:10px;background:{_STATUS_COLORS.get(s.status, "#999")}"></div></div>'
        )
        rows.append(
            "<tr>"
            f"<td>{html.escape(s.agent)}</td><td>{html.escape(s.task)}</td>"
            f'<td style="text-align:right">+{begin:.3f}</td>'
            f'<td style="text-align:right">{"" if took is None else f"{took:.3f}"}</td>'
            f"<td>{html.escape(s.status)}</td><td>{bar}</td></tr>"
        )
    return HTML(
        '<table class="ensemble-timings">'
        "<thead><tr><th>agent</th><th>task</th><th>started at +s</th><th>duration s</th>"
        "<th>status</th><th>timeline</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def html_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> HTML:
    """Render dict rows as an HTML table for notebooks (plans, sources, checkpoint history).

    Values are escaped because they may hold model output; lists are joined with commas and
    None shows as an empty cell, so state values can be passed as they are.

    Args:
        rows: one mapping per row.
        columns: the keys to show, in order; by default those of the first row.
    """
    rows = list(rows)
    keys = list(columns) if columns is not None else list(rows[0]) if rows else []

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list | tuple):
            return html.escape(", ".join(str(v) for v in value))
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(k))}</td>" for k in keys) + "</tr>" for row in rows
    )
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


_STATUS_COLORS = {
    "finished": "#4a8a5a",
    "failed": "#c0392b",
    "waiting": "#d49a00",
    "running": "#6c5fc7",
}
