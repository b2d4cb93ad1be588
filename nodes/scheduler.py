"""The scheduler: turns finished attempts into results and releases the next work orders.

Every task whose dependencies are done is released, highest priority first; each replica goes
to a capable, healthy agent with the least load (ties by cost, then reliability, then name),
never to an agent that already failed this task or already answered another replica of it. A
task with replicas is decided by vote once enough agents answered. When no capable agent is
left, or a vote splits, the run asks a person instead of failing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ensemble.agents import AgentRegistry, AgentSpec
from ensemble.agents.load import LOAD
from ensemble.nodes.team import team_of
from ensemble.progress import emit
from ensemble.resilience import BOARD
from ensemble.state.solver import Attempt, HelpRequest, SolverState, TaskResult, WorkOrder
from ensemble.voting import Vote, VotePolicy, decide
from ensemble.workspace import Workspace

Health = Callable[[str], bool]
"""Whether an agent is in rotation (its breaker is not open)."""


def healthy(name: str) -> bool:
    """The process-wide breaker of an agent is closed or half-open."""
    return BOARD.breaker(f"agent:{name}").state != "open"


def on_trial(name: str) -> bool:
    """The agent's breaker is half-open: it may take one trial task, not a round's worth."""
    return BOARD.breaker(f"agent:{name}").state == "half_open"


def attempts_of(state: SolverState, task_id: str) -> list[Attempt]:
    """A task's attempts in the order they were made."""
    gone = set(state.discarded)
    found = [a for a in state.attempts.values() if a["task"] == task_id and a["id"] not in gone]
    return sorted(found, key=lambda a: (a["started"], a["id"]))


def settle(task: Mapping[str, Any], attempts: list[Attempt]) -> TaskResult | HelpRequest | None:
    """A finished task's result, a split vote for a person, or None while answers are missing."""
    answered: dict[str, Attempt] = {}
    for attempt in attempts:
        if attempt["ok"] and attempt["agent"] not in answered:
            answered[attempt["agent"]] = attempt
    replicas = int(task.get("replicas", 1))
    if len(answered) < replicas:
        return None
    chosen = list(answered.values())[:replicas]
    if replicas == 1:
        only = chosen[0]
        return _result("done", only["value"], [only["agent"]], None, "")
    default = {"policy": "numeric" if task.get("expect") == "number" else "majority"}
    policy = VotePolicy.model_validate(task.get("vote") or default)
    votes = [Vote(agent=a["agent"], value=a["value"], confidence=a["confidence"]) for a in chosen]
    outcome = decide(votes, policy)
    record = {
        "policy": policy.model_dump(),
        "status": outcome.status,
        "value": outcome.value,
        "support": outcome.support,
        "reason": outcome.reason,
        "votes": [{"agent": v.agent, "value": v.value, "confidence": v.confidence} for v in votes],
    }
    if outcome.status == "agreed":
        return _result("done", outcome.value, [v.agent for v in votes], record, outcome.reason)
    return {"task": str(task["id"]), "reason": "split vote", "detail": record}


def _result(
    status: str, value: Any, agents: list[str], vote: dict[str, Any] | None, note: str
) -> TaskResult:
    return {"status": status, "value": value, "agents": agents, "vote": vote, "note": note}  # type: ignore[typeddict-item]


def plan_round(
    state: SolverState,
    team: AgentRegistry,
    is_healthy: Health = healthy,
    load: Counter | None = None,
) -> tuple[dict[str, TaskResult], list[WorkOrder], HelpRequest | None]:
    """One scheduling round: new results, the work orders to send, or a question for a person.

    First every task that can be settled is (repeated until nothing changes, so a result flows
    to its dependents in the same round), then the ready tasks are assigned, by priority.
    """
    results = dict(state.results)
    new: dict[str, TaskResult] = {}
    order = sorted(range(len(state.tasks)), key=lambda i: (-state.tasks[i]["priority"], i))
    ready: list[dict[str, Any]] = []
    changed = True
    while changed:
        changed, ready = False, []
        for index in order:
            task = state.tasks[index]
            tid = task["id"]
            if tid in results:
                continue
            deps = [results.get(d) for d in task["depends_on"]]
            if any(d is not None and d["status"] == "failed" for d in deps):
                new[tid] = results[tid] = _result("failed", None, [], None, "a dependency failed")
                changed = True
                continue
            if any(d is None for d in deps):
                continue  # not ready: a dependency is still open
            attempts = attempts_of(state, tid)
            settled = settle(task, attempts)
            failures = [a for a in attempts if not a["ok"]]
            if settled is not None and "status" in settled:
                new[tid] = results[tid] = settled  # type: ignore[assignment]
                changed = True
            elif settled is not None:
                return new, [], settled  # type: ignore[return-value]
            elif len(failures) >= state.max_attempts * int(task["replicas"]):
                note = f"{len(failures)} failed attempts; last: {failures[-1]['error']}"
                new[tid] = results[tid] = _result("failed", None, [], None, note)
                changed = True
            else:
                ready.append(task)
    orders: list[WorkOrder] = []
    load = Counter(load or {})
    for task in ready:
        tid = task["id"]
        attempts = attempts_of(state, tid)
        picked = assign(task, attempts, team, state, is_healthy, load)
        if picked is None:
            capable = [a.name for a in team.capable(task["capability"])]
            detail = {
                "capability": task["capability"],
                "capable": capable,
                "unhealthy": [n for n in capable if not is_healthy(n)],
                "failed_here": sorted({a["agent"] for a in attempts if not a["ok"]}),
            }
            return new, [], {"task": tid, "reason": "no capable agent left", "detail": detail}
        inputs = {d: results[d]["value"] for d in task["depends_on"]}
        for replica, agent in picked:
            load[agent.name] += 1
            orders.append(
                {
                    "task": task,
                    "agent": agent.model_dump(mode="json"),
                    "replica": replica,
                    "attempt_id": f"{tid}:{replica}:{agent.name}:{uuid.uuid4().hex[:6]}",
                    "inputs": inputs,
                    "corpus": state.corpus,
                }
            )
    return new, orders, None


def assign(
    task: Mapping[str, Any],
    attempts: list[Attempt],
    team: AgentRegistry,
    state: SolverState,
    is_healthy: Health,
    load: Counter,
    is_trial: Health = on_trial,
) -> list[tuple[int, AgentSpec]] | None:
    """Agents for the replicas still missing, least loaded first; None when too few are left."""
    answered = {a["agent"] for a in attempts if a["ok"]}
    failed = {a["agent"] for a in attempts if not a["ok"]}
    forced = task["id"] in state.retry_all  # a person said: try everyone again
    missing = int(task["replicas"]) - len(answered)
    candidates = [
        agent
        for agent in team.capable(task["capability"])
        if agent.name not in answered
        and (forced or agent.name not in failed)
        and (forced or is_healthy(agent.name))
        and (not task.get("tool") or task["tool"] in agent.tools)
        and not (is_trial(agent.name) and load[agent.name] > 0)
    ]
    if len(candidates) < missing:
        return None
    candidates.sort(key=lambda a: (load[a.name], a.cost, -a.reliability, a.name))
    taken = {a["replica"] for a in attempts if a["ok"]}
    free = [r for r in range(int(task["replicas"])) if r not in taken]
    return list(zip(free, candidates[:missing], strict=False))


async def scheduler(state: SolverState, *, workspace: Workspace) -> dict:
    """Settle what finished; queue the next orders, or ask a person."""
    team = team_of(state)
    busy = Counter(LOAD.snapshot())  # other runs of this process count as load too
    new, orders, help_request = plan_round(state, team, load=busy)
    for tid, result in new.items():
        emit("scheduler", "finished", task=tid, result=result["status"], agents=result["agents"])
    released = [f"{o['task']['id']}->{o['agent']['name']}" for o in orders]
    if orders:
        workspace.audit("route", "scheduler", released=released)
    if help_request:
        reason = help_request["reason"]
        workspace.audit("route", "scheduler", to="help", task=help_request["task"], reason=reason)
    if orders:
        emit("scheduler", "started", released=released)
    return {"results": new, "queue": orders, "help": help_request}
