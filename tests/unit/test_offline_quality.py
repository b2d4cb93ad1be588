"""The pieces that make offline answers worth reading: retrieval, planning, writing, sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from ensemble.corpus import CorpusIndex, Passage
from ensemble.corpus.index import query_sequence
from ensemble.corpus.ranking import diversify, names_in, prior, score, title_words
from ensemble.corpus.sources import pydoc_chapters
from ensemble.corpus.tables import flatten_tables
from ensemble.evaluation.metrics import is_well_formed_question
from ensemble.nodes.citations import numbers_in
from ensemble.nodes.researcher import write_note
from ensemble.nodes.synthesizer import cited_only, report_body
from ensemble.offline import OfflineChatModel
from ensemble.offline.extractive import diverse_top, introduces
from ensemble.offline.model import OFFLINE_MARKER
from ensemble.offline.questions import plan_questions, title_question, topic_of
from ensemble.state.research import ResearchTask
from ensemble.text import is_prose, keywords_in, operator_words, terms
from ensemble.tools.corpus import plain_text


def small_corpus(tmp_path: Path) -> CorpusIndex:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "decorators.md").write_text(
        "# Decorators\n\nA decorator wraps a function and returns a new callable. "
        "Decorators are applied with the @ syntax above a function definition.\n"
    )
    (folder / "wraps.md").write_text(
        "# functools.wraps\n\nThe wraps helper copies the name and docstring of the wrapped "
        "function onto the wrapper, so decorated functions keep their metadata.\n"
    )
    (folder / "noise.md").write_text(
        "# Compilers\n\nThe default compiler works on every platform and decorates nothing.\n"
    )
    return CorpusIndex(tmp_path / "e.db", folder)


def test_retrieval_matches_word_forms_and_weights_titles(tmp_path: Path) -> None:
    index = small_corpus(tmp_path)
    hits = index.search("How do decorated functions keep a decorator's metadata?", k=3)
    assert hits[0].id.startswith(("file:wraps.md", "file:decorators.md"))
    assert "file:noise.md#1" not in [h.id for h in hits[:2]]
    titled = index.search("decorator", k=1)  # "Decorators" in the title, stemmed
    assert titled[0].id == "file:decorators.md#1"


def test_python_keywords_used_as_keywords_are_searched() -> None:
    assert keywords_in("How does the with statement work?") == ["with"]
    assert keywords_in("What does `yield` do?") == ["yield"]
    assert keywords_in("Open a file with Python") == []


def test_the_prior_favours_the_language_reference_over_legacy_corners() -> None:
    assert prior("pydoc:with") > prior("stdlib:json") > prior("stdlib:lib2to3.fixer_base")
    assert prior("stdlib:_collections_abc.Sized") < prior("stdlib:collections.abc")
    # the pure-Python twin is where decimal's documentation lives; its private parts are not
    assert prior("stdlib:_pydecimal.Decimal") == prior("stdlib:json")
    assert prior("stdlib:_pydecimal._dec_from_triple") < prior("stdlib:json")
    # a chapter repeating other topics whole yields to the dedicated topic
    assert "compound" in pydoc_chapters() and "with" not in pydoc_chapters()
    assert prior("pydoc:compound") < prior("pydoc:with")


def test_one_long_page_does_not_crowd_out_other_sources() -> None:
    hits = [(10.0, "stdlib:email.generator", "a"), (9.9, "stdlib:email.parser", "b"),
            (9.0, "pydoc:yield", "c")]  # fmt: skip
    assert diversify(hits)[:2] == ["a", "c"]


def test_the_planner_writes_questions_a_person_would_write() -> None:
    request = (
        "How do decorators work in Python?\n\n"
        "Titles of the best matching passages in the corpus:\n"
        "- functools.wraps: Decorator factory to apply update_wrapper() to a wrapper function\n"
        "- pdb: The Python debugger\n"
    )
    plan = plan_questions(request)
    assert plan == [
        "How do decorators work in Python?",
        "What is a decorator?",
        "What does functools.wraps do?",
    ]
    assert all(is_well_formed_question(q) for q in plan)
    assert topic_of("How does the with statement work in Python?") == "the with statement"
    assert title_question('The "with" statement', "") == 'How does the "with" statement work?'
    assert plan_questions("decorators") == ["What does the documentation say about decorators?"]


def test_writing_picks_relevant_prose_and_not_the_same_thing_twice() -> None:
    assert not is_prose('[pydoc:with#1] The "with" statement (Python language reference: with)')
    assert not is_prose(">>> '01\\t012'.expandtabs()")
    units = [
        "A decorator wraps a function and returns a new callable.",
        "A decorator wraps a function and returns a new callable object.",
        "The wraps helper keeps the metadata of the decorated function.",
        "Compilers are unrelated here.",
    ]
    picked = diverse_top(units, [3.0, 2.9, 2.5, 0.2], limit=3)
    assert picked == [0, 2]


def test_a_writer_given_sections_answers_section_by_section() -> None:
    notes = (
        "Question: How do decorators work?\n\nNotes:\n\n"
        "### What is a decorator?\n"
        "A decorator wraps a function and returns a new callable. [1]\n"
        "Unrelated text about compilers that is long enough to count. [2]\n\n"
        "### What does functools.wraps do?\n"
        "The wraps helper copies the name and docstring of the wrapped function. [3]\n"
    )
    text = str(OfflineChatModel().invoke([HumanMessage(notes)]).content)
    assert text.startswith(OFFLINE_MARKER)
    assert "## What is a decorator?" in text and "## What does functools.wraps do?" in text
    assert "returns a new callable. [1]" in text and "copies the name" in text
    assert "compilers" not in text


def test_the_source_list_holds_only_what_the_body_cites_renumbered() -> None:
    sources = [{"n": n, "passage_id": f"p{n}", "title": f"t{n}", "source": "s"} for n in (1, 2, 3)]
    body, kept = cited_only("Second first [3]. Then one [1][3].", sources)  # type: ignore[arg-type]
    assert body == "Second first [1]. Then one [2][1]."
    assert [(s["n"], s["passage_id"]) for s in kept] == [(1, "p3"), (2, "p1")]


def review_state(cited_text: str, report: str) -> Any:
    from ensemble.state.research import ResearchState

    return ResearchState(
        question="How do decorators work?",
        plan=[{"id": "sq-1", "question": "What is a decorator?", "rationale": ""}],
        notes={
            "sq-1": {
                "task_id": "sq-1",
                "subquestion": "What is a decorator?",
                "summary": "",
                "cited": ["p1"],
                "round": 0,
                "fallback": False,
                "error": None,
            }
        },  # fmt: skip
        passages={"p1": {"id": "p1", "title": "t", "source": "s", "excerpt": cited_text}},
        sources=[{"n": 1, "passage_id": "p1", "title": "t", "source": "s"}],
        report=report,
    )


def test_the_reviewer_finds_an_off_topic_citation_a_gap() -> None:
    from ensemble.nodes.reviewer import check_report

    on_topic = review_state("A decorator wraps a function.", "A decorator wraps a function. [1]")
    assert check_report(on_topic) == ([], [])
    off_topic = review_state(
        "The default compiler for the platform.", "A decorator wraps a function. [1]"
    )
    gaps, issues = check_report(off_topic)
    assert gaps == ["What is a decorator?"]  # its only citation is about something else
    assert issues == [
        "citation [1] shares no key term with its claim: A decorator wraps a function."
    ]
    texts = {"p1": "Decorators: a decorator wraps a function."}  # the full text decides
    assert check_report(off_topic, texts) == ([], [])


def test_an_operator_written_as_a_symbol_is_searched_by_its_name() -> None:
    assert operator_words("How do the // and % operators behave?") == [
        "floor", "division", "__floordiv__", "modulo", "__mod__",
    ]  # fmt: skip
    assert operator_words("x-y and a*b and __init__") == []  # not standing alone


def test_weak_hits_are_not_shown_to_a_researcher(tmp_path: Path) -> None:
    import asyncio

    from ensemble.nodes.researcher import RELEVANT_SHARE, _search

    index = small_corpus(tmp_path)
    hits = asyncio.run(_search(index, "decorator wraps function metadata", 3))
    best = hits[0].score
    assert all(h.score >= RELEVANT_SHARE * best for h in hits)
    assert len(hits) < len(index.search("decorator wraps function metadata", 3))


def test_a_question_listing_several_things_is_split_into_one_question_each() -> None:
    asked = "How do json encoding, pickle protocols and csv dialects work?"
    assert plan_questions(asked, 4) == [
        "How does json encoding work?",
        "How do pickle protocols work?",
        "How do csv dialects work?",
    ]
    assert plan_questions("What are lists and tuples?") == ["What is a list?", "What is a tuple?"]


GRID = """Mutable sequences support:

+-------------------+------------------------------+-------+
| Operation         | Result                       | Notes |
|===================|==============================|=======|
| "s.append(x)"     | appends *x* to the end of    |       |
|                   | the sequence                 |       |
+-------------------+------------------------------+-------+
| "s.remove(x)"     | remove the first item from   | (3)   |
|                   | *s* equal to *x*             |       |
+-------------------+------------------------------+-------+

Notes follow."""


def test_a_grid_table_is_read_as_one_sentence_per_row() -> None:
    flat = flatten_tables(GRID)
    assert '"s.append(x)": appends *x* to the end of the sequence.' in flat.splitlines()
    assert '"s.remove(x)": remove the first item from *s* equal to *x* (3).' in flat.splitlines()
    assert "Operation" not in flat and "+---" not in flat  # header and rules are gone
    assert flat.startswith("Mutable sequences support:") and flat.endswith("Notes follow.")
    rows = [line for line in flat.splitlines() if line.startswith('"s.')]
    assert all(is_prose(row) for row in rows)  # inline code does not make a row "code"


def test_a_ragged_block_is_left_as_it_was() -> None:
    traceback = "  + Exception Group Traceback\n  | ValueError: 1\n  +-+---- 1 ----\n"
    assert flatten_tables(traceback) == traceback
    wide = "+----+\n| too wide for its borders |\n+----+"
    assert flatten_tables(wide) == wide


def test_identifiers_in_titles_are_read_as_words() -> None:
    assert {"Thread", "Pool", "Executor"} <= set(
        title_words("concurrent.futures.ThreadPoolExecutor", ["pool", "threads"])
    )
    assert "token" in title_words("secrets.token_urlsafe", ["token"])
    # a compound counts as the two words the query writes apart, and only then
    assert {"copy", "file"} <= set(title_words("shutil.copyfile", ["copy", "file"]))
    assert "file" not in title_words("shutil.copyfile", ["move", "file"])


def test_a_repeated_word_still_forms_a_compound_with_its_neighbour(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "abc.md").write_text("# abstractmethod\n\nA decorator marking a method abstract.\n")
    (folder / "base.md").write_text(
        "# Base classes\n\nAn abstract base class is a class; abstract, base and class again.\n"
    )
    index = CorpusIndex(tmp_path / "e.db", folder)
    assert query_sequence("abstract base class with abstract methods")[-2:] == [
        "abstract",
        "methods",
    ]
    hits = index.search("How do I define an abstract base class with abstract methods?", k=2)
    assert hits[0].id == "file:abc.md#1"


def test_the_writer_reads_an_operator_symbol_as_its_name() -> None:
    assert {"floor", "division", "modulo"} <= set(terms("How do the // and % operators behave?"))
    assert keywords_in("the // and % operators") == []  # "and" is not the keyword here
    assert keywords_in("the with statement and the 'yield' keyword") == ["yield", "with"]


def test_a_heading_does_not_run_into_the_first_sentence() -> None:
    text = "Numeric literals\n****************\n\nThere are three types.\n\nNotes\n-----\nA note."
    assert plain_text(text, "Numeric literals") == "There are three types.\nNotes. A note."
    example = "Calculate the mean:\n\n>>> mean([1, 2])\n1.5\n\nCalculate the\nmedian."
    assert plain_text(example, "statistics").splitlines() == [
        "Calculate the mean:",
        ">>> mean([1, 2]) 1.5",
        "Calculate the median.",
    ]


def test_a_name_counts_as_asked_only_when_each_of_its_parts_is() -> None:
    words = ["start", "thread", "wait", "finish", "threading"]
    named = names_in("How do I start a thread and wait for it to finish?", words)
    start = score(1.0, "stdlib:threading.Thread.start", "threading.Thread.start", words, named)
    wait = score(1.0, "stdlib:threading.Barrier.wait", "threading.Barrier.wait", words, named)
    assert start > wait  # "wait" alone does not name Barrier.wait
    words = ["run", "coroutines", "asyncio"]
    named = names_in("How do I run coroutines with asyncio?", words)
    run = score(1.0, "stdlib:asyncio.runners.run", "asyncio.runners.run", words, named)
    assert run > score(
        1.0, "stdlib:asyncio.runners.Runner2", "asyncio.runners.Runner2", words, named
    )


def test_a_heading_left_empty_by_repeats_is_dropped() -> None:
    body = report_body("## A\n\nText [1].\n\n## B\n\n## C\n\nMore [1].\n\n## D", "", {1})
    assert body == "## A\n\nText [1].\n\n## C\n\nMore [1]."


def test_a_section_does_not_quote_what_an_earlier_one_said() -> None:
    shared = "The statistics module calculates averages, variance and standard deviation. [1]"
    request = (
        "Question: How do I compute a mean?\n\n## How do I compute a mean?\n"
        f"{shared}\n\n## What does the statistics module provide?\n{shared}\n"
        "It also offers median and mode for discrete data of any kind. [2]"
    )
    text = OfflineChatModel().invoke([HumanMessage(request)]).text
    assert text.count(shared) == 1
    assert "median and mode" in text


def test_an_index_in_quoted_code_is_not_a_citation() -> None:
    text = "Append to it: lists[0].append(3) gives [[3]] [1][2]. See also [4](https://x)."
    assert numbers_in(text) == [1, 2]


def test_a_sentence_introducing_what_is_not_quoted_is_not_quoted() -> None:
    assert introduces("Performs the following translations in decoding by default: [3]")
    assert not introduces("Decode a JSON document and return a Python object. [3]")


def test_a_fallback_note_quotes_prose_not_code() -> None:
    passage = Passage(
        "pydoc:typesseq#6",
        "Sequence Types",
        "pydoc",
        ">>> lists = [[]] * 3\n>>> lists\n[[], [], []]\n\n"
        "What has happened is that the list holds three references to one empty list.",
    )
    task: ResearchTask = {"task_id": "t", "subquestion": "Why?", "round": 0, "corpus": None}
    note = write_note(task, "", {passage.id: passage})
    assert note["fallback"]
    assert note["summary"].startswith("What has happened") and ">>>" not in note["summary"]


def test_a_short_sentence_is_prose_but_a_short_label_or_an_assignment_is_not() -> None:
    assert is_prose("Start the thread's activity. [1]")
    assert not is_prose("Simple JSON <https://json.org> decoder [3]")
    assert not is_prose("x = copy.copy(y) # make a shallow copy of y, and of nothing else")
