"""Digits read out as English words ("four one one one, …", "oh seven eight …"): found in
requests and answers, whole and streamed, over exactly the words that write them, and
left alone in prose that only counts."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import aiguard
from _sdk_policy import openai_and_anthropic_policy, openai_client
from aiguard.classify._decode import DIGIT_WORDS, _units, decode, detect_decoded
from aiguard.classify.detectors import builtin_detector, merge_findings
from aiguard.context import CallContext
from aiguard.doors.streaming import HoldBack, TokenRestorer, open_spelled_number
from aiguard.pipeline.call import Call
from aiguard.testing import FakeModel, InMemorySink

DETECTORS = [builtin_detector()]
SPOKEN = {digit: word for word, digit in DIGIT_WORDS.items() if word != "oh"}
CARD = "4111111111111111"
SSN = "078051120"


def spelled(digits: str, separators: tuple[str, ...] = (" ",), cases: str = "l") -> str:
    """``digits`` as words, the i-th word in case ``cases[i % len]`` (l, t, u) and
    followed by separator ``separators[i % len]``."""
    words = []
    for i, ch in enumerate(digits):
        word = SPOKEN[ch]
        case = cases[i % len(cases)]
        words.append(word.title() if case == "t" else word.upper() if case == "u" else word)
        words.append(separators[i % len(separators)])
    return "".join(words[:-1])


def kinds(text: str) -> list[tuple[str, str]]:
    """(kind, written text) of each finding, the decoded views included."""
    return [
        (f.kind, text[f.start : f.end]) for f in merge_findings(detect_decoded(DETECTORS, text))
    ]


_separator = st.sampled_from([" ", ", ", "-", " - ", ",", "  "])
# Prose around a number: letters, spaces and marks that end the run of words.
_prose = st.text(alphabet="abcdklmpy .;:!?()", max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=9, max_size=19),
    separators=st.lists(_separator, min_size=1, max_size=4).map(tuple),
    cases=st.text(alphabet="ltu", min_size=1, max_size=4),
    zero=st.sampled_from(["zero", "oh"]),
    before=_prose,
    after=_prose,
)
@example(digits=CARD, separators=(" ",), cases="l", zero="zero", before="", after="")
def test_any_spelled_number_decodes_to_its_digits_over_its_words(
    digits: str,
    separators: tuple[str, ...],
    cases: str,
    zero: str,
    before: str,
    after: str,
) -> None:
    """Nine digits or more read out as words, in any case and with any mix of spaces,
    commas and dashes between them: one unit over exactly the words, read as the digits."""
    written = spelled(digits, separators, cases).replace("zero", zero).replace("Zero", zero)
    written = written.replace("ZERO", zero.upper())
    text = f"{before} {written} {after}"
    start = len(before) + 1
    assert (start, start + len(written), "spelled") in _units(text), (text, _units(text))
    view = decode(text)[0]
    assert view.text == f"{before} {digits} {after}"
    assert view.span(len(before) + 1, len(before) + 1 + len(digits)) == (
        start,
        start + len(written),
    )


@pytest.mark.parametrize(
    ("text", "kind", "written"),
    [
        (f"card {spelled(CARD)}, thanks", "credit_card", spelled(CARD)),
        (
            f"card {spelled(CARD, (', ', '-'), 'tu')}.",
            "credit_card",
            spelled(CARD, (", ", "-"), "tu"),
        ),
        (
            "my SSN is zero seven eight, zero five, one one two zero.",
            "us_ssn",
            "zero seven eight, zero five, one one two zero",
        ),
        (
            "SSN: oh seven eight oh five one one two oh",
            "us_ssn",
            "oh seven eight oh five one one two oh",
        ),
        # A lone surrogate (an answer that was not UTF-8, read with surrogateescape).
        (f"\udce9 card {spelled(CARD)}", "credit_card", spelled(CARD)),
        # Not ASCII elsewhere in the text: the same finding, over the same words.
        (f"Café Müller: card {spelled(CARD)} ✓", "credit_card", spelled(CARD)),
    ],
)
def test_a_spelled_value_is_found_over_its_words(text: str, kind: str, written: str) -> None:
    assert kinds(text) == [(kind, written)]


@settings(max_examples=300, deadline=None)
@given(
    digits=st.sampled_from([CARD, "5555555555554444", SSN, "14155552671", "493090182017"])
    | st.text(alphabet="0123456789", min_size=9, max_size=16),
    label=st.sampled_from(["", "card ", "my SSN is ", "call ", "ref-", "card/", "x,", "(", "+"]),
    separators=st.lists(_separator, min_size=1, max_size=3).map(tuple),
    cases=st.text(alphabet="ltu", min_size=1, max_size=3),
    before=_prose,
    after=_prose,
)
def test_spelled_digits_are_found_as_the_digits_would_be(
    digits: str, label: str, separators: tuple[str, ...], cases: str, before: str, after: str
) -> None:
    """Whatever is around them, digits read out as words give what the digits give in
    their place (a number glued to an id, "ref-4111…", is no value either way), over
    the words that write them."""
    written = spelled(digits, separators, cases)
    # A letter glued after the words ends the run a word early, not the number: "after"
    # starts after a space.
    words, plain = (f"{before} {label}{value} {after}" for value in (written, digits))
    at = len(before) + 1 + len(label)

    def moved(end: int) -> int:  # an offset in ``plain`` as one in ``words``
        return end + len(written) - len(digits) if end >= at + len(digits) else end

    expected = [
        (f.kind, words[f.start : moved(f.end)])
        for f in merge_findings(detect_decoded(DETECTORS, plain))
        if f.start < at + len(digits) and f.end > at  # the ones that take the digits
    ]
    assert [k for k in kinds(words) if written in k[1] or k[1] in written] == [
        (kind, text if text != digits else written) for kind, text in expected
    ], (words, plain)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["one", "Two", "SIX", "oh", "eight", "nine", " ", ", ", "-", "d", "a", "x", "7", "."]
        ),
        max_size=60,
    ).map("".join)
)
@example("card four one one one one one one one one one one one one one one nined")
@example("one two three four five six seven eight nine" + " " * 30 + "one")
def test_the_gate_never_skips_a_run_the_pattern_finds(text: str) -> None:
    """The byte-mask gate and the stretch it bounds find exactly the runs the pattern
    finds over the whole text (a word glued to the stretch's end included)."""
    from aiguard.classify._decode import _SPELLED, _spelled_units

    expected = [(m.start(), m.end(), "spelled") for m in _SPELLED.finditer(text)]
    assert _spelled_units(text, text.encode()) == expected


@pytest.mark.parametrize(
    "text",
    [
        "one two three four five six seven eight",  # eight words: no unit
        "I have one or two, maybe three, four or five of them",
        "one by one, two by two, three by three",
        "someone two three four five six seven eight nine",  # "someone" is no word
        "one two three four five six seven eight ninety",  # nor "ninety"
        "the fifth, sixth, seventh one: four five six seven eight nine one two",
        "x" * 40 + " " * 60 + "y",  # a long run of spaces passes the gate, holds no word
    ],
)
def test_prose_that_counts_is_left_alone(text: str) -> None:
    assert [u for u in _units(text) if u[2] == "spelled"] == []
    assert kinds(text) == []


def test_nine_digit_words_that_are_no_value_are_not_a_finding() -> None:
    """A unit is only a view: nine words that read as no value find nothing."""
    text = "one two three four five six seven eight nine"
    assert [u[2] for u in _units(text)] == ["spelled"]
    assert kinds(text) == []


def test_request_side_tokenizes_a_spelled_value_and_restores_it() -> None:
    guard = aiguard.Guard(openai_and_anthropic_policy(), sinks=[InMemorySink()])
    text = f"Please charge card {spelled(CARD, (' ', ', '), 'lt')} and confirm."
    with guard.context(subject="s", purpose="inference"):
        protected = guard.protect(text, destination="openai")
    out = protected.payload
    assert re.fullmatch(r"Please charge card \[CREDIT_CARD_[0-9A-Z]+\] and confirm\.", out), out
    assert guard.restore(out, protected) == text


# -- streamed: held from the run's first word -----------------------------------------


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("I have one", 7),
        ("I have one ", 7),
        ("card four one one, one one-one", 5),
        ("card four one one, one o", 5),  # "o" may still become "one" or "oh"
        ("Four One", 0),
        ("five,", 0),
        ("someone", None),
        ("x onetwo", None),
        ("4one", None),
        ("five apples", None),
        ("four one one.", None),  # a full stop ends the run
        ("", None),
    ],
)
def test_the_run_of_digit_words_a_text_ends_in(text: str, start: int | None) -> None:
    assert open_spelled_number(text) == start


def _rule() -> Call:
    return Call(aiguard.Guard(), CallContext(), None)


def _streamed(pieces: list[str]) -> list[str]:
    hold = HoldBack(TokenRestorer({}.get).swap, _rule())
    out = [hold.feed(piece) for piece in pieces]
    out.append(hold.flush())
    return [piece for piece in out if piece]


@pytest.mark.parametrize(
    "written",
    [
        spelled(CARD),
        spelled(CARD, (", ", "-"), "ut"),
        "zero seven eight, zero five, one one two zero",
    ],
)
def test_every_cut_of_a_spelled_value_is_withheld_whole(written: str) -> None:
    """Cut anywhere, the caller gets the words redacted whole: no piece holds two of
    them in a row."""
    text = f"Sure, my SSN and card: {written}. Bye"
    whole = "".join(_streamed([text]))
    assert written not in whole and "[REDACTED:" in whole, whole
    pairs = re.findall(r"(?=([A-Za-z]+[ ,-]+[A-Za-z]+))", written)
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1, 7):
            out = _streamed([text[:i], text[i:j], text[j:]])
            assert "".join(out) == whole, (i, j, out)
            for piece in out:
                assert not [p for p in pairs if p in piece], (i, j, piece)


@settings(max_examples=200, deadline=None)
@given(
    digits=st.sampled_from([CARD, "5555555555554444", "378282246310005"]),
    separators=st.lists(_separator, min_size=1, max_size=3).map(tuple),
    cases=st.text(alphabet="ltu", min_size=1, max_size=3),
    before=_prose,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_a_spelled_card_streamed_cut_anywhere_is_redacted_as_in_the_whole_text(
    digits: str, separators: tuple[str, ...], cases: str, before: str, cuts: list[int]
) -> None:
    written = spelled(digits, separators, cases)
    text = f"{before} card {written} ok"
    whole = "".join(_streamed([text]))
    assert "[REDACTED:credit_card]" in whole and written not in whole, whole
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    assert "".join(_streamed(pieces)) == whole


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_through_the_openai_sdk_whole_and_streamed(chunk_size: int) -> None:
    """An answer that reads a card number out is redacted, whole and streamed in pieces
    of any size, and the event counts it; the words around it arrive as written."""
    written = spelled(CARD, (" ", ", "), "lt")
    fake = FakeModel(reply=f"Your card is {written}. Anything else?", chunk_size=chunk_size)
    sink = InMemorySink()
    guard = aiguard.Guard(openai_and_anthropic_policy(), sinks=[sink])
    client = openai_client(guard, fake)
    messages = [{"role": "user", "content": "What card do I have on file?"}]
    with guard.context(subject="s", purpose="inference"):
        whole = client.chat.completions.create(model="gpt-4o", messages=messages)
        stream = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
        deltas = [c.choices[0].delta.content or "" for c in stream if c.choices]
    expected = "Your card is [REDACTED:credit_card]. Anything else?"
    assert whole.choices[0].message.content == expected
    assert "".join(deltas) == expected
    for delta in deltas:
        assert "one one" not in delta.lower() and "one, one" not in delta.lower(), delta
    assert [c["leaks"] for c in sink.calls()] == [{"credit_card": 1}] * 2
