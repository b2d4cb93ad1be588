"""The content pipeline: research, write, edit, human approval, publish.

Hierarchical: the editor-in-chief (`chief`) plans the items and sends each to the research team
(the research scenario's graph as a subgraph) and then to the writing team (outline -> writer ->
editor loop, a subgraph with its own state), in parallel with `Send`; it assembles the drafts,
a person approves, and only then the publisher writes files. Routing reads only structured
state (which items have research, drafts, an approval), never text from documents or drafts.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from ensemble.context import Context
from ensemble.graphs.compiling import add_agent
from ensemble.graphs.research import build_research
from ensemble.graphs.scenario import Scenario
from ensemble.graphs.writing_team import build_writing_team
from ensemble.nodes.approval import APPROVAL, approval
from ensemble.nodes.assemble import assemble
from ensemble.nodes.chief import chief, content_intake
from ensemble.nodes.publisher import publisher
from ensemble.nodes.teams import research_team, writing_team
from ensemble.state.content import (
    STATE_VERSION,
    ContentInput,
    ContentOutput,
    ContentState,
    ItemTask,
)
from ensemble.workspace import Workspace

NAME = "content"

MAX_RESEARCH_ATTEMPTS = 3
"""An item whose research keeps failing is written from what there is (the writer sees none)."""


def _task(state: ContentState, item: Any) -> ItemTask:
    share = max(50, state.target_words // max(1, len(state.brief)))
    return {
        "item": item,
        "corpus": state.corpus,
        "brief": {
            "audience": state.audience,
            "tone": state.tone,
            "format": state.format,
            "target_words": share,
            "max_revisions": state.max_revisions,
        },
        "digest": state.research.get(item["id"]),
        "previous": state.drafts.get(item["id"]),
        "human_notes": list(state.human_notes),
        "round": state.writing_round,
    }


def route_chief(state: ContentState) -> list[Send] | Literal["assemble"]:
    """Research what has no research, then write what has no draft of this round."""
    unresearched = [
        i
        for i in state.brief
        if (d := state.research.get(i["id"])) is None
        or (d["error"] and d.get("attempts", 1) < MAX_RESEARCH_ATTEMPTS)
    ]
    if unresearched:
        return [Send("research_team", _task(state, i)) for i in unresearched]
    unwritten = [
        i
        for i in state.brief
        if (w := state.drafts.get(i["id"])) is None or w["round"] < state.writing_round
    ]
    if unwritten:
        return [Send("writing_team", _task(state, i)) for i in unwritten]
    return "assemble"


def route_after_approval(
    state: ContentState,
) -> Literal["approval", "publisher", "chief", "__end__"]:
    """Refused answer: ask again. Reject: end. Changes: back to the writers. Else publish."""
    if state.approval_feedback:
        return "approval"
    if state.outcome == "rejected":
        return "__end__"
    if state.approval is None:
        return "chief"  # request_changes: the chief sends every item back to the writers
    return "publisher"


def build_content(
    workspace: Workspace,
) -> StateGraph[ContentState, Context, ContentInput, ContentOutput]:
    """Build the (uncompiled) content graph, with its two teams as subgraphs."""
    builder = StateGraph(
        ContentState, context_schema=Context, input_schema=ContentInput, output_schema=ContentOutput
    )
    research = research_team(build_research(workspace).compile(name="research_team"))
    writers = writing_team(build_writing_team(workspace).compile(name="writing_team"))
    builder.add_node("intake", partial(content_intake, workspace=workspace))
    add_agent(builder, "chief", chief, workspace=workspace)
    add_agent(
        builder, "research_team", research, retry=False, input_schema=ItemTask, workspace=workspace
    )
    add_agent(
        builder, "writing_team", writers, retry=False, input_schema=ItemTask, workspace=workspace
    )
    builder.add_node("assemble", assemble)
    builder.add_node("approval", partial(approval, workspace=workspace))
    builder.add_node("publisher", partial(publisher, workspace=workspace))
    builder.add_edge(START, "intake")
    builder.add_edge("intake", "chief")
    builder.add_conditional_edges(
        "chief", route_chief, ["research_team", "writing_team", "assemble"]
    )
    builder.add_edge("research_team", "chief")
    builder.add_edge("writing_team", "chief")
    builder.add_edge("assemble", "approval")
    builder.add_conditional_edges(
        "approval", route_after_approval, ["approval", "publisher", "chief", END]
    )
    builder.add_edge("publisher", END)
    return builder


def summary(values: Mapping[str, Any]) -> str:
    """What the CLI prints at the end: the piece, its sources, and where it was published."""
    lines = [f"# {values.get('title', '')}", "", str(values.get("piece", "")).rstrip(), ""]
    sources = values.get("sources") or []
    if sources:
        lines += ["## Sources", ""]
        lines += [f"[{s['n']}] {s['title']} ({s['source']})" for s in sources]
        lines.append("")
    published = values.get("published")
    if published:
        lines.append("Published: " + ", ".join(published["files"]))
    elif values.get("outcome") == "rejected":
        lines.append("Rejected: nothing was published.")
    return "\n".join(lines)


SCENARIO = Scenario(
    name=NAME,
    state_version=STATE_VERSION,
    description="Content pipeline: an editor-in-chief, a research team and a writing team "
    "(outline, writer, editor loop), human approval, then publishing to Markdown and HTML.",
    build=build_content,
    input_schema=ContentInput,
    primary_field="topic",
    output_keys=tuple(ContentOutput.__annotations__),
    approve_answer={"action": "approve"},
    check_answer=APPROVAL.check_answer,
    gates={APPROVAL.kind: APPROVAL},
    folders={"corpus": "corpus", "output_dir": "output"},
    summary=summary,
)
