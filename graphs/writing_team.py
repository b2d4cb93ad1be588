"""The writing team: outline -> writer -> editor loop, a subgraph with its own state.

The content pipeline calls it once per item (in parallel for a newsletter). A person's change
request is exactly one more writing round: the writer runs once and the editor does not loop.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from ensemble.context import Context
from ensemble.graphs.compiling import add_agent
from ensemble.nodes.editor import editor
from ensemble.nodes.outliner import outliner
from ensemble.nodes.writer import writer
from ensemble.state.writing import WritingState
from ensemble.workspace import Workspace


def route_after_writer(state: WritingState) -> Literal["editor", "__end__"]:
    """A person's revision is one round; a fresh draft goes to the editor."""
    return "__end__" if state.mode == "human_revision" else "editor"


def route_after_editor(state: WritingState) -> Literal["writer", "__end__"]:
    """Another round on the editor's requests, until the loop decided how it ends."""
    return "__end__" if state.outcome else "writer"


def build_writing_team(
    workspace: Workspace,
) -> StateGraph[WritingState, Context, WritingState, WritingState]:
    """Build the (uncompiled) writing team."""
    builder = StateGraph(WritingState, context_schema=Context)
    add_agent(builder, "outliner", outliner, workspace=workspace)
    add_agent(builder, "writer", writer, workspace=workspace)
    add_agent(builder, "editor", editor, workspace=workspace)
    builder.add_edge(START, "outliner")
    builder.add_edge("outliner", "writer")
    builder.add_conditional_edges("writer", route_after_writer, ["editor", END])
    builder.add_conditional_edges("editor", route_after_editor, ["writer", END])
    return builder
