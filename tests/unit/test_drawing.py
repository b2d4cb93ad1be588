"""Graph pictures and timing tables: well-formed, complete, deterministic."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from ensemble.drawing import (
    HTML,
    SVG,
    collect_timings,
    graph_mermaid,
    graph_svg,
    html_table,
    timings_table,
)
from ensemble.graphs.registry import SCENARIOS

NS = {"svg": "http://www.w3.org/2000/svg"}


class Toy(TypedDict):
    n: int


def _noop(state: Toy) -> dict:
    return {}


def toy_graph():
    """Diamond, a labelled back edge, a self-loop and a node only reachable conditionally."""
    b = StateGraph(Toy)
    for name in ("a", "b", "c", "d", "e", "side"):
        b.add_node(name, _noop)
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("a", "c")
    b.add_edge("b", "d")
    b.add_edge("c", "d")
    b.add_conditional_edges("d", lambda s: "e", {"retry": "a", "go": "e", "self": "d"})
    b.add_conditional_edges("e", lambda s: END, ["side", END])
    b.add_edge("side", END)
    return b.compile(name="toy")


def edges_by_title(root: ET.Element) -> dict[str, ET.Element]:
    found = {}
    for g in root.iter(f"{{{NS['svg']}}}g"):
        if "edge" in g.get("class", "").split():
            found[g.find("svg:title", NS).text] = g
    return found


def node_labels(root: ET.Element) -> set[str]:
    return {
        g.find("svg:text", NS).text
        for g in root.iter(f"{{{NS['svg']}}}g")
        if g.get("class") == "node"
    }


def test_research_graph_svg_is_complete_and_well_formed():
    graph = SCENARIOS["research"].compile()
    svg = graph_svg(graph)
    assert isinstance(svg, SVG) and isinstance(svg, str)
    root = ET.fromstring(svg)
    assert root.tag == f"{{{NS['svg']}}}svg"
    drawable = graph.get_graph()
    assert node_labels(root) == set(drawable.nodes)
    edges = edges_by_title(root)
    assert len(edges) == len(drawable.edges)
    for edge in drawable.edges:
        path = edges[f"{edge.source} \u2192 {edge.target}"].find("svg:path", NS)
        assert (path.get("stroke-dasharray") is not None) == edge.conditional, edge
        assert path.get("marker-end", "").startswith("url(#")


def test_loops_are_drawn_as_back_edges():
    root = ET.fromstring(graph_svg(SCENARIOS["research"].compile()))
    back = {t for t, g in edges_by_title(root).items() if "back" in g.get("class", "").split()}
    assert back == {
        "reviewer \u2192 researcher",
        "reviewer \u2192 synthesizer",
        "review_plan \u2192 review_plan",
    }


def test_toy_graph_labels_cycles_and_determinism():
    graph = toy_graph()
    svg = graph_svg(graph)
    assert svg == graph_svg(toy_graph())  # deterministic layout
    root = ET.fromstring(svg)
    assert node_labels(root) == set(graph.get_graph().nodes)
    texts = {t.text for t in root.iter(f"{{{NS['svg']}}}text")}
    assert {"retry", "self"} <= texts  # path-map keys that differ from the target are shown
    edges = edges_by_title(root)
    assert "back" in edges["d \u2192 a"].get("class")
    assert "back" in edges["d \u2192 d"].get("class")
    assert "back" not in edges["a \u2192 b"].get("class")
    # Everything drawn lies inside the viewBox.
    x0, y0, w, h = (float(v) for v in root.get("viewBox").split())
    for rect in root.iter(f"{{{NS['svg']}}}rect"):
        x, y = float(rect.get("x")), float(rect.get("y"))
        assert x0 <= x and x + float(rect.get("width")) <= x0 + w + 0.1
        assert y0 <= y and y + float(rect.get("height")) <= y0 + h + 0.1


def test_svg_displays_in_jupyter_and_escapes_names():
    b = StateGraph(Toy)
    b.add_node("a<b&c>", _noop)
    b.add_edge(START, "a<b&c>")
    b.add_edge("a<b&c>", END)
    svg = graph_svg(b.compile())
    root = ET.fromstring(svg._repr_svg_())
    assert "a<b&c>" in node_labels(root)
    assert str(svg) == svg and type(str(svg)) is str
    assert repr(svg).startswith("<SVG")


def test_mermaid_is_langgraphs_text():
    graph = SCENARIOS["research"].compile()
    assert graph_mermaid(graph) == graph.get_graph().draw_mermaid()


def test_timings_table_pairs_starts_with_ends():
    events = [
        (10.0, {"agent": "intake", "status": "finished"}),
        (10.1, {"agent": "planner", "status": "started"}),
        (10.4, {"agent": "planner", "status": "finished"}),
        (10.5, {"agent": "researcher", "status": "started", "task": "sq-1"}),
        (10.5, {"agent": "researcher", "status": "started", "task": "sq-2"}),
        (10.7, {"agent": "researcher", "status": "failed", "task": "sq-2", "error": "x"}),
        (11.0, {"agent": "researcher", "status": "finished", "task": "sq-1"}),
        (11.1, {"agent": "reviewer", "status": "started"}),
        (11.2, {"agent": "reviewer", "status": "finished"}),
        (11.3, {"agent": "reviewer", "status": "started"}),
        (11.5, {"agent": "reviewer", "status": "finished"}),
        (11.6, {"agent": "plan_review", "status": "waiting"}),
        (11.6, "not an agent event"),
    ]
    table = timings_table(events)
    assert isinstance(table, HTML) and table._repr_html_() == str(table)
    root = ET.fromstring(table)  # well-formed markup
    rows = [[td.text or "" for td in tr.findall("td")] for tr in root.iter("tr")][1:]
    got = [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
    assert got == [
        ("intake", "", "+0.000", "", "finished"),
        ("planner", "", "+0.100", "0.300", "finished"),
        ("researcher", "sq-1", "+0.500", "0.500", "finished"),
        ("researcher", "sq-2", "+0.500", "0.200", "failed"),
        ("reviewer", "", "+1.100", "0.100", "finished"),
        ("reviewer", "", "+1.300", "0.200", "finished"),
        ("plan_review", "", "+1.600", "", "waiting"),
    ]


def test_timings_table_without_events():
    assert "No progress events" in timings_table([])


def test_html_table_escapes_and_joins():
    table = html_table([{"a": "<b>", "b": ["x", "y"], "c": None}], ["a", "b", "c"])
    assert "&lt;b&gt;" in table and "<td>x, y</td>" in table and "<td></td>" in table


async def test_collect_timings_on_a_real_run(corpus_dir, tmp_path):
    from langgraph.checkpoint.memory import InMemorySaver

    from ensemble.context import Context

    graph = SCENARIOS["research"].compile(InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    values, events = await collect_timings(
        graph,
        {"question": "How do bees make honey?", "corpus": str(corpus_dir)},
        config,
        Context(model="offline"),
    )
    assert values is not None and values["outcome"]
    stamps = [t for t, _ in events]
    assert stamps == sorted(stamps)
    agents = {e["agent"] for _, e in events}
    assert {"intake", "planner", "researcher", "synthesizer", "reviewer", "finalize"} <= agents
    table = timings_table(events)
    for agent in agents:
        assert f"<td>{agent}</td>" in table

    no_saver = SCENARIOS["research"].compile()
    values, events = await collect_timings(
        no_saver,
        {"question": "How do bees make honey?", "corpus": str(corpus_dir)},
        {},
        Context(model="offline"),
    )
    assert values is None and events
