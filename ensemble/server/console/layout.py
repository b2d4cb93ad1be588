"""A scenario's graph laid out for drawing: nodes in layers from the start, edges between them.

LangGraph gives the nodes and edges (`get_graph()`); the console draws boxes and lines, so the
server decides where each box goes: a node's layer is its longest path from `__start__` over
edges that do not loop back, nodes of one layer side by side.
"""

from __future__ import annotations

from typing import Any

NODE_WIDTH, NODE_HEIGHT = 140, 36
X_GAP, Y_GAP = 40, 44


def layout(graph: Any) -> dict[str, Any]:
    """`{"nodes": [{id, label, x, y, kind}], "edges": [{source, target, conditional}], ...}`."""
    names = list(graph.nodes)
    edges = [(e.source, e.target, bool(e.conditional)) for e in graph.edges]
    forward = _without_back_edges(names, edges)
    layer = dict.fromkeys(names, 0)
    for _ in names:  # longest path: relax until nothing moves (the graph is small)
        moved = False
        for source, target in forward:
            if layer[target] < layer[source] + 1:
                layer[target], moved = layer[source] + 1, True
        if not moved:
            break
    rows: dict[int, list[str]] = {}
    for name in names:
        rows.setdefault(layer[name], []).append(name)
    widest = max(len(row) for row in rows.values())
    width = widest * (NODE_WIDTH + X_GAP) + X_GAP
    nodes = []
    for depth, row in sorted(rows.items()):
        offset = (width - len(row) * (NODE_WIDTH + X_GAP) + X_GAP) / 2
        for i, name in enumerate(row):
            nodes.append(
                {
                    "id": name,
                    "label": name.strip("_"),
                    "x": round(offset + i * (NODE_WIDTH + X_GAP)),
                    "y": Y_GAP / 2 + depth * (NODE_HEIGHT + Y_GAP),
                    "kind": {"__start__": "start", "__end__": "end"}.get(name, "node"),
                }
            )
    return {
        "nodes": nodes,
        "edges": [{"source": s, "target": t, "conditional": c} for s, t, c in edges],
        "width": width,
        "height": len(rows) * (NODE_HEIGHT + Y_GAP) + Y_GAP / 2,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
    }


def _without_back_edges(
    names: list[str], edges: list[tuple[str, str, bool]]
) -> list[tuple[str, str]]:
    """The edges a depth-first walk from the start does not find looping back."""
    out: dict[str, list[str]] = {name: [] for name in names}
    for source, target, _ in edges:
        out.setdefault(source, []).append(target)
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    back: set[tuple[str, str]] = set()

    def walk(node: str) -> None:
        state[node] = 1
        for nxt in out.get(node, []):
            if state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                walk(nxt)
        state[node] = 2

    for root in ["__start__", *names]:
        if root in out and root not in state:
            walk(root)
    return [(s, t) for s, t, _ in edges if (s, t) not in back and s != t]
