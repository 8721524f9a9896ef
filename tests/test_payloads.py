"""Every payload kind through the real OpenAI and Anthropic SDKs, sync and async,
streaming and not, against the fake model on a mock transport and on a loopback server:
the model never receives a detected raw value and the caller gets exactly the answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiguard
from aiguard.pipeline.call import Call
from aiguard.policy.model import JsonAdapterPolicy, PatternPolicy
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values
from aiguard.testing.fake import Answer, ToolCall
from aiguard.vault.tokens import TOKEN_RE

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0134"
ACCOUNT = "ACC-12345678"
NAME_IN_ARGS = 'O\'Hara "JD" \\ jane.roe@example.com'
RAW = [EMAIL, PHONE, ACCOUNT, "jane.roe@example.com"]


def tokens_in(text: str) -> list[str]:
    return [m.group(0) for m in TOKEN_RE.finditer(text)]


@dataclass
class World:
    guard: aiguard.Guard
    sink: InMemorySink
    fake: FakeModel
    openai_url: str
    anthropic_url: str
    loopback: bool

    def oa(self, asynchronous: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("max_retries", 0)
        transport = None if self.loopback else self.fake.transport
        if asynchronous:
            return openai.AsyncOpenAI(
                http_client=self.guard.async_http_client(transport=transport),
                base_url=self.openai_url,
                api_key="test",
                **kwargs,
            )
        return openai.OpenAI(
            http_client=self.guard.http_client(transport=transport),
            base_url=self.openai_url,
            api_key="test",
            **kwargs,
        )

    def an(self, asynchronous: bool = False) -> Any:
        transport = None if self.loopback else self.fake.transport
        if asynchronous:
            return anthropic.AsyncAnthropic(
                http_client=self.guard.async_http_client(transport=transport),
                base_url=self.anthropic_url,
                api_key="test",
                max_retries=0,
            )
        return anthropic.Anthropic(
            http_client=self.guard.http_client(transport=transport),
            base_url=self.anthropic_url,
            api_key="test",
            max_retries=0,
        )

    def context(self) -> Any:
        return self.guard.context(subject="cust-1", tenant="acme", purpose="inference")


POLICY_PATTERNS = [PatternPolicy(kind="account", level="sensitive", regex="ACC-[0-9]{8}")]


def make_world(fake: FakeModel, base: str | None, **destination: Any) -> World:
    openai_url = f"{base}/v1" if base else "https://api.openai.com/v1"
    anthropic_url = base or "https://api.anthropic.com"
    sink = InMemorySink()
    spec = {"approved": True, "purposes": ["inference"], **destination}
    policy = aiguard.Policy(
        destinations={
            "openai": aiguard.DestinationPolicy(base_url=openai_url, **spec),
            # On loopback both SDKs talk to the same server; the longer path wins.
            "anthropic": aiguard.DestinationPolicy(base_url=anthropic_url, **spec),
        },
        patterns=POLICY_PATTERNS,
    )
    return World(
        aiguard.Guard(policy, sinks=[sink]), sink, fake, openai_url, anthropic_url, bool(base)
    )


@contextlib.contextmanager
def world_for(kind: str, fake: FakeModel, **destination: Any) -> Iterator[World]:
    if kind == "loopback":
        with fake.serve() as base:
            yield make_world(fake, base, **destination)
    else:
        yield make_world(fake, None, **destination)


@pytest.fixture(params=["mock", "loopback"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def sent_args(answer_args: dict[str, Any]) -> Callable[[dict[str, Any]], Answer]:
    """A model that calls a tool with the tokens it received (and the given extras)."""

    def reply(payload: dict[str, Any]) -> Answer:
        found = [t for t in tokens_in(json.dumps(payload)) if t.startswith("[EMAIL_")]
        args = {"to": found[0] if found else "nobody", **answer_args}
        return Answer(
            "Calling a tool for " + (found[0] if found else "?"),
            (ToolCall("send", json.dumps(args)),),
        )

    return reply


# -- OpenAI Chat Completions ------------------------------------------------------------

CHAT_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": f"Support desk. Escalations go to {EMAIL}."},
    {"role": "developer", "content": [{"type": "text", "text": f"Account {ACCOUNT}."}]},
    {
        "role": "user",
        "name": "jane",
        "content": [{"type": "text", "text": f"Call me at {PHONE} or mail {EMAIL}."}],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "lookup",
                    "arguments": json.dumps({"email": EMAIL, "id": ACCOUNT, "who": NAME_IN_ARGS}),
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"phone": PHONE})},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "send",
            "description": f"Send mail, e.g. to {EMAIL}",
            "parameters": {"type": "object", "properties": {"to": {"type": "string"}}},
        },
    }
]


class TestChat:
    @pytest.mark.parametrize("stream", [False, True])
    def test_every_field_is_protected_and_tool_arguments_restored(
        self, kind: str, stream: bool
    ) -> None:
        """System, developer, parts, tool history, tool descriptions, user and metadata."""
        fake = FakeModel(sent_args({"note": NAME_IN_ARGS}), chunk_size=3)
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            kwargs: dict[str, Any] = {
                "model": "gpt-4o",
                "messages": CHAT_MESSAGES,
                "tools": TOOLS,
                "user": EMAIL,
                "metadata": {"id": ACCOUNT, "contact": PHONE},
                "stream": stream,
            }
            if stream:
                text, args = "", ""
                for chunk in client.chat.completions.create(**kwargs):
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
                        for call in choice.delta.tool_calls or []:
                            args += call.function.arguments or ""
            else:
                reply = client.chat.completions.create(**kwargs)
                message = reply.choices[0].message
                text = message.content
                args = message.tool_calls[0].function.arguments
        assert_no_raw_values(fake, RAW)
        assert json.loads(args) == {"to": EMAIL, "note": NAME_IN_ARGS}
        assert text == "Calling a tool for " + EMAIL
        body = fake.bodies[0]
        inner = json.loads(body["messages"][3]["tool_calls"][0]["function"]["arguments"])
        assert set(inner) == {"email", "id", "who"} and all(
            TOKEN_RE.search(v) for v in inner.values()
        )
        event = w.sink.calls()[-1]
        assert event["type"] == "call" and event["findings"]["email"] >= 3
        assert_chain_valid(w.sink)

    def test_n_choices_are_restored_separately(self, kind: str) -> None:
        """n > 1: every choice gets its originals back, streamed and not."""
        fake = FakeModel(chunk_size=2)
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            msgs = [{"role": "user", "content": f"mail {EMAIL}"}]
            reply = client.chat.completions.create(model="gpt-4o", messages=msgs, n=2)
            assert [c.message.content for c in reply.choices] == [f"Echo: mail {EMAIL}"] * 2
            texts = ["", ""]
            for chunk in client.chat.completions.create(
                model="gpt-4o", messages=msgs, n=2, stream=True
            ):
                for choice in chunk.choices:
                    texts[choice.index] += choice.delta.content or ""
            assert texts == [f"Echo: mail {EMAIL}"] * 2
        assert_no_raw_values(fake, RAW)

    def test_structured_output_is_restored_inside_its_json(self, kind: str) -> None:
        """A JSON answer holding a token stays valid JSON with the escaped original."""

        def reply(payload: dict[str, Any]) -> str:
            email = [t for t in tokens_in(json.dumps(payload)) if t.startswith("[EMAIL_")]
            return json.dumps({"customer": email[0], "ok": True})

        fake = FakeModel(reply, chunk_size=5)
        fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            msgs = [{"role": "user", "content": f"I am {EMAIL}"}]
            reply_ = client.chat.completions.create(
                model="gpt-4o", messages=msgs, response_format=fmt
            )
            assert json.loads(reply_.choices[0].message.content) == {
                "customer": EMAIL,
                "ok": True,
            }
            text = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="gpt-4o", messages=msgs, response_format=fmt, stream=True
                )
                if c.choices
            )
            assert json.loads(text) == {"customer": EMAIL, "ok": True}

    #: JSON a model writes with values only the whole document shows: a card number
    #: written as a number, and a voided SSN (found only next to a word of its kind)
    #: whose word is its key, or a key before it.
    STRUCTURED_LEAKS = (
        {"card_number": 4111111111111111, "customer": "ok"},
        {"ssn": "078-05-1120"},
        {"type": "SSN", "value": "078-05-1120"},
        {"rows": [{"n": 5, "cc": 5555555555554444}]},
        {"type": "SSN", "value": 'it is "078-05-1120"\tok é'},
    )

    #: Tool arguments and results a caller sends back as history, with values that are
    #: values only as the whole JSON shows them: after a word of their kind in another
    #: key or value, or written as a number.
    CONTEXT_ONLY = (
        {"id_type": "SSN", "id_number": "219099998"},
        {"kind": "ssn", "number": 219099998},
        {"n": {"type": "SSN", "value": 'said "078-05-1120"\t.'}},
        {"rows": [{"card": 4111111111111111}]},
    )

    @pytest.mark.parametrize("doc", CONTEXT_ONLY)
    def test_json_text_the_caller_sends_is_protected_as_a_whole(
        self, kind: str, doc: dict[str, Any]
    ) -> None:
        """Tool-call arguments and a tool's result in the history: a value that only the
        whole JSON text shows goes upstream as a token, and the JSON stays valid."""
        raw_values = ("219099998", "078-05-1120", "4111111111111111")
        fake = FakeModel("ok")
        with world_for(kind, fake) as w, w.context():
            history: list[dict[str, Any]] = [
                {"role": "user", "content": "look it up"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": json.dumps(doc)},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(doc)},
            ]
            w.oa().chat.completions.create(model="gpt-4o", messages=history)
        sent = fake.bodies[-1]
        assert not [v for v in raw_values if v in json.dumps(sent)], sent
        arguments = sent["messages"][1]["tool_calls"][0]["function"]["arguments"]
        for text in (arguments, sent["messages"][2]["content"]):
            assert json.loads(text).keys() == doc.keys()
            assert tokens_in(text), text

    def test_only_the_value_found_is_withheld_inside_a_string_with_escapes(self) -> None:
        """Offsets found in the written JSON map back through its escapes: the rest of
        the string, and the caller's own restored value beside it, stay as they were."""
        call = Call(aiguard.Guard(), aiguard.CallContext(), None)
        own = "[EMAIL_ABCDEFGH]"
        call.issued[own] = EMAIL
        doc = {"type": "note", "value": 'is "x"\tSSN 078-05-1120, ok \u00e9', "by": f"{own} \t."}
        out = json.loads(call.restore_text("$.args", json.dumps(doc)))
        assert out == {
            "type": "note",
            "value": 'is "x"\tSSN [REDACTED:us_ssn], ok \u00e9',
            "by": f"{EMAIL} \t.",
        }
        assert dict(call.leaks) == {"us_ssn": 1}

    def test_a_value_its_sibling_names_is_withheld_whole(self) -> None:
        """Named by its sibling as a request reads it, the whole value is the SSN."""
        call = Call(aiguard.Guard(), aiguard.CallContext(), None)
        doc = {"type": "SSN", "value": 'is "x"\t078-05-1120, ok \u00e9'}
        out = json.loads(call.restore_text("$.args", json.dumps(doc)))
        assert out == {"type": "SSN", "value": "[REDACTED:us_ssn]"}
        assert dict(call.leaks) == {"us_ssn": 1}

    @pytest.mark.parametrize("leak", STRUCTURED_LEAKS)
    def test_structured_output_and_tool_arguments_withhold_what_the_document_shows(
        self, kind: str, leak: dict[str, Any]
    ) -> None:
        """Structured output and tool-call arguments, whole and streamed: a value that is
        one only as the whole JSON shows it (a number, a value next to its key) is
        withheld too, where a scan of each string alone missed it."""
        leaked = ("4111111111111111", "5555555555554444", "078-05-1120")
        fake = FakeModel(
            [
                json.dumps(leak),
                Answer(tool_calls=(ToolCall("send", json.dumps(leak)),)),
            ]
            * 2,
            chunk_size=5,
        )
        fmt = {"type": "json_object"}
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            msgs = [{"role": "user", "content": "hi"}]
            whole = client.chat.completions.create(
                model="gpt-4o", messages=msgs, response_format=fmt
            )
            tool = client.chat.completions.create(model="gpt-4o", messages=msgs)
            answers = [
                whole.choices[0].message.content,
                tool.choices[0].message.tool_calls[0].function.arguments,
            ]
            streamed_text = ""
            streamed_args = ""
            for stream in (
                client.chat.completions.create(
                    model="gpt-4o", messages=msgs, response_format=fmt, stream=True
                ),
                client.chat.completions.create(model="gpt-4o", messages=msgs, stream=True),
            ):
                for chunk in stream:
                    for choice in chunk.choices:
                        streamed_text += choice.delta.content or ""
                        for call in choice.delta.tool_calls or []:
                            streamed_args += call.function.arguments or ""
            answers += [streamed_text, streamed_args]
        for answer in answers:
            assert not [v for v in leaked if v in answer], answer
            assert "[REDACTED:" in answer, answer
        for answer in answers:  # still JSON, streamed too: a number's redaction is a string
            assert json.loads(answer).keys() == leak.keys(), answer
        assert sum(w.sink.calls()[-1]["leaks"].values()) >= 1

    def test_multi_turn_history_gets_the_same_tokens(self, kind: str) -> None:
        """Restored values sent back as history are tokenized again identically."""
        fake = FakeModel(sent_args({}))
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            history: list[dict[str, Any]] = [{"role": "user", "content": f"mail {EMAIL}"}]
            first = (
                client.chat.completions.create(model="gpt-4o", messages=history).choices[0].message
            )
            history.append(first.model_dump(exclude_none=True))
            history.append(
                {
                    "role": "tool",
                    "tool_call_id": "call_fake_1",
                    "content": json.dumps({"sent_to": EMAIL}),
                }
            )
            client.chat.completions.create(model="gpt-4o", messages=history)
        assert_no_raw_values(fake, RAW)
        first_token = tokens_in(json.dumps(fake.bodies[0]))[0]
        second = json.dumps(fake.bodies[1])
        assert set(tokens_in(second)) == {first_token}
        assert second.count(first_token) == 4  # user turn, content, tool arguments, tool result


# -- OpenAI Responses ------------------------------------------------------------------


class TestResponses:
    @pytest.mark.parametrize("stream", [False, True])
    def test_items_instructions_and_function_calls(self, kind: str, stream: bool) -> None:
        """input items, instructions and function call outputs; function call answers."""
        fake = FakeModel(sent_args({"who": NAME_IN_ARGS}), chunk_size=4)
        items: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "input_text", "text": f"Call {PHONE}"}]},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "lookup",
                "arguments": json.dumps({"email": EMAIL}),
            },
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": json.dumps({"account": ACCOUNT}),
            },
        ]
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            kwargs = {"model": "gpt-4o", "input": items, "instructions": f"Escalate to {EMAIL}"}
            if stream:
                args = text = ""
                final = None
                for event in client.responses.create(**kwargs, stream=True):
                    if event.type == "response.function_call_arguments.delta":
                        args += event.delta
                    elif event.type == "response.output_text.delta":
                        text += event.delta
                    elif event.type == "response.completed":
                        final = event.response
                assert final is not None and final.output[1].arguments == args
            else:
                response = client.responses.create(**kwargs)
                text = response.output_text
                args = response.output[1].arguments
        assert_no_raw_values(fake, RAW)
        assert json.loads(args) == {"to": EMAIL, "who": NAME_IN_ARGS}
        assert text == "Calling a tool for " + EMAIL

    def test_string_input(self, kind: str) -> None:
        fake = FakeModel()
        with world_for(kind, fake) as w, w.context():
            response = w.oa().responses.create(model="gpt-4o", input=f"mail {EMAIL}")
        assert response.output_text == f"Echo: mail {EMAIL}"
        assert_no_raw_values(fake, RAW)


# -- OpenAI Embeddings -----------------------------------------------------------------


class TestEmbeddings:
    def test_string_and_array_inputs_share_tokens(self, kind: str) -> None:
        """Deterministic tokens: the same value is the same token in every input."""
        fake = FakeModel()
        with world_for(kind, fake) as w, w.context():
            client = w.oa()
            one = client.embeddings.create(model="text-embedding-3-small", input=f"mail {EMAIL}")
            many = client.embeddings.create(
                model="text-embedding-3-small", input=[f"mail {EMAIL}", f"call {PHONE}"]
            )
        assert_no_raw_values(fake, RAW)
        assert fake.bodies[0]["input"] == fake.bodies[1]["input"][0]
        assert one.data[0].embedding == many.data[0].embedding
        assert w.sink.calls()[-1]["gen_ai.operation.name"] == "embeddings"


# -- Anthropic Messages ----------------------------------------------------------------

ANTHROPIC_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": f"I'm at {PHONE}"}]},
    {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "lookup",
                "input": {"id": ACCOUNT, "email": EMAIL},
            }
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": f"found {EMAIL}"}],
            }
        ],
    },
]


class TestAnthropic:
    @pytest.mark.parametrize("stream", [False, True])
    def test_system_blocks_tool_use_and_tool_results(self, kind: str, stream: bool) -> None:
        """tool_use input keys named id are data too; tool_use answers come back restored."""
        fake = FakeModel(sent_args({"who": NAME_IN_ARGS}), chunk_size=3)
        with world_for(kind, fake) as w, w.context():
            client = w.an()
            kwargs: dict[str, Any] = {
                "model": "claude-opus-4-1",
                "max_tokens": 100,
                "system": [{"type": "text", "text": f"Escalate to {EMAIL}"}],
                "messages": ANTHROPIC_MESSAGES,
                "metadata": {"user_id": EMAIL},
            }
            if stream:
                with client.messages.stream(**kwargs) as events:
                    message = events.get_final_message()
            else:
                message = client.messages.create(**kwargs)
        assert_no_raw_values(fake, RAW)
        assert message.content[0].text == "Calling a tool for " + EMAIL
        assert message.content[1].input == {"to": EMAIL, "who": NAME_IN_ARGS}
        assert fake.bodies[0]["messages"][1]["content"][0]["input"]["id"] != ACCOUNT

    @pytest.mark.parametrize("stream", [False, True])
    def test_objects_are_read_whole_both_ways(self, kind: str, stream: bool) -> None:
        """A tool's input object and metadata: a value that only another key or value
        names goes upstream as a token, and a model's comes back withheld (before, each
        value was read alone, in the request and in a whole answer)."""
        leak = {"id_type": "SSN", "id_number": "219099998", "card": 4111111111111111}
        fake = FakeModel(Answer("ok", tool_calls=(ToolCall("lookup", json.dumps(leak)),)))
        history = [
            {"role": "user", "content": "look it up"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": leak}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"}],
            },
        ]
        with world_for(kind, fake) as w, w.context():
            kwargs: dict[str, Any] = {
                "model": "claude-opus-4-1",
                "max_tokens": 100,
                "messages": history,
                "metadata": {"user_id": "u-7", "kind": "SSN", "ref": "219099998"},
            }
            client = w.an()
            if stream:
                with client.messages.stream(**kwargs) as events:
                    message = events.get_final_message()
            else:
                message = client.messages.create(**kwargs)
        sent = json.dumps(fake.bodies[-1])
        assert "219099998" not in sent and "4111111111111111" not in sent, sent
        tool_input = fake.bodies[-1]["messages"][1]["content"][0]["input"]
        assert tool_input["id_type"] == "SSN" and tokens_in(tool_input["id_number"])
        answer = message.content[1].input
        assert answer["id_type"] == "SSN"
        assert answer["id_number"] == "[REDACTED:us_ssn]", answer
        assert answer["card"] == "[REDACTED:credit_card]", answer

    def test_system_string(self, kind: str) -> None:
        fake = FakeModel("ok")
        with world_for(kind, fake) as w, w.context():
            w.an().messages.create(
                model="claude-opus-4-1",
                max_tokens=10,
                system=f"Customer {EMAIL}",
                messages=[{"role": "user", "content": "hi"}],
            )
        assert_no_raw_values(fake, RAW)


# -- async twins -------------------------------------------------------------------------


class TestAsync:
    def test_chat_tools_responses_and_anthropic_streams(self, kind: str) -> None:
        """The async clients, streaming every format with tool arguments."""
        fake = FakeModel(sent_args({"who": NAME_IN_ARGS}), chunk_size=3)

        async def main(w: World) -> None:
            async with w.context():
                oa = w.oa(asynchronous=True)
                args = ""
                stream = await oa.chat.completions.create(
                    model="gpt-4o", messages=CHAT_MESSAGES, stream=True
                )
                async for chunk in stream:
                    for choice in chunk.choices:
                        for call in choice.delta.tool_calls or []:
                            args += call.function.arguments or ""
                assert json.loads(args)["who"] == NAME_IN_ARGS
                response = await oa.responses.create(model="gpt-4o", input=f"mail {EMAIL}")
                assert json.loads(response.output[1].arguments)["to"] == EMAIL
                an = w.an(asynchronous=True)
                async with an.messages.stream(
                    model="claude-opus-4-1", max_tokens=10, messages=ANTHROPIC_MESSAGES
                ) as events:
                    message = await events.get_final_message()
                assert message.content[1].input["who"] == NAME_IN_ARGS

        with world_for(kind, fake) as w:
            asyncio.run(main(w))
        assert_no_raw_values(fake, RAW)
        assert [e["type"] for e in w.sink.calls()] == ["call"] * 3


# -- what no adapter reads -------------------------------------------------------------


class TestUnreadable:
    def test_unknown_path_is_refused_with_the_way_out(self) -> None:
        fake = FakeModel()
        with world_for("mock", fake) as w, w.context():
            client = w.oa()
            with pytest.raises(aiguard.MalformedPayload, match='unknown_paths = "protect"'):
                client.post("/vendor/extract", body={"text": EMAIL}, cast_to=object)
        assert fake.requests == []
        assert w.sink.records[-1].document["type"] == "refusal"

    def test_unknown_path_protected_when_allowed(self) -> None:
        fake = FakeModel()
        with world_for("mock", fake, unknown_paths="protect") as w, w.context():
            w.oa().post("/vendor/extract", body={"text": EMAIL, "id": "x"}, cast_to=object)
        assert_no_raw_values(fake, RAW)

    def test_generic_adapter_keeps_and_restores_named_paths(self) -> None:
        """The policy's paths: keep passes a field raw, restore limits what is restored."""

        def reply(request: Any) -> Any:
            body = json.loads(request.read())
            return fake._module.Response(
                200, json={"output": {"text": body["prompt"]}, "echo": body["prompt"]}
            )

        fake = FakeModel()
        adapter = JsonAdapterPolicy(
            path="/generate",
            protect=["$.prompt"],
            keep=["$.options.mode"],
            restore=["$.output.text"],
        )
        transport = fake._module.MockTransport(reply)
        with world_for("mock", fake, adapters=[adapter]) as w, w.context():
            client = w.guard.http_client(transport=transport)
            answer = client.post(
                "https://api.openai.com/v1/generate",
                json={"prompt": f"mail {EMAIL}", "options": {"mode": EMAIL}},
            ).json()
        assert answer["output"]["text"] == f"mail {EMAIL}"
        assert TOKEN_RE.search(answer["echo"])

    def test_multipart_is_refused_unless_forwarded_explicitly(self) -> None:
        fake = FakeModel()
        files = {"file": ("a.txt", EMAIL.encode(), "text/plain")}
        with world_for("mock", fake) as w, w.context():
            client = w.guard.http_client(transport=fake.transport)
            with pytest.raises(aiguard.MalformedPayload, match="forward_unreadable = true"):
                client.post("https://api.openai.com/v1/files", files=files)
        assert fake.requests == []
        with world_for("mock", fake, forward_unreadable=True) as w, w.context():
            client = w.guard.http_client(transport=fake.transport)
            client.post("https://api.openai.com/v1/files", files=files)
        assert len(fake.requests) == 1
        event = w.sink.calls()[-1]
        assert any("forwarded unread" in r for r in event["reasons"])

    def test_compressed_body_is_refused(self) -> None:
        fake = FakeModel()
        with world_for("mock", fake) as w, w.context():
            client = w.guard.http_client(transport=fake.transport)
            with pytest.raises(aiguard.MalformedPayload, match="content-encoding gzip"):
                client.post(
                    "https://api.openai.com/v1/chat/completions",
                    content=b"\x1f\x8b...",
                    headers={"content-encoding": "gzip", "content-type": "application/json"},
                )
        assert fake.requests == []


CARD = "4111 1111 1111 1111"
_POLICY = aiguard.Policy(
    destinations={
        "openai": aiguard.DestinationPolicy(
            base_url="https://api.openai.com/v1", approved=True, purposes=["inference"]
        )
    }
)


def _answered(body: bytes, content_type: str) -> bytes:
    """What the caller reads when the model answers ``body`` (a guard with the SDK
    transport's default output rule: REGULATED values the call never sent)."""
    guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
    transport = httpx.MockTransport(
        lambda _request: httpx.Response(200, content=body, headers={"content-type": content_type})
    )
    client = guard.http_client(transport=transport)
    with guard.context(purpose="inference"):
        answer = client.post(
            "https://api.openai.com/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert answer.status_code == 200
    return answer.content


class TestAnswerEncodings:
    """An answer that is not UTF-8 is still read by the output rule (#16)."""

    @pytest.mark.parametrize(
        ("body", "content_type", "codec"),
        [
            (f"card {CARD} café".encode("latin-1"), "text/plain; charset=latin-1", "latin-1"),
            (f"card {CARD} café".encode("latin-1"), "text/plain", "utf-8"),
            (
                json.dumps({"choices": [{"message": {"content": f"card {CARD} café"}}]})
                .encode("utf-8")
                .replace(b"caf\xc3\xa9", b"caf\xe9"),
                "application/json",
                "utf-8",
            ),
            (
                json.dumps({"choices": [{"message": {"content": f"card {CARD}"}}]}).encode(
                    "utf-16"
                ),
                "application/json",
                "utf-16",
            ),
            (f"card {CARD}".encode("utf-16-be"), "text/plain; charset=utf-16-be", "utf-16-be"),
        ],
        ids=["latin-1 declared", "stray byte in text", "stray byte in JSON", "utf-16 JSON", "be"],
    )
    def test_a_value_in_an_answer_that_is_not_utf8_is_withheld(
        self, body: bytes, content_type: str, codec: str
    ) -> None:
        shown = _answered(body, content_type).decode(codec, "replace")
        assert CARD not in shown
        assert "[REDACTED:credit_card]" in shown

    @settings(max_examples=60, deadline=None)
    @given(
        st.binary(max_size=24).map(lambda b: bytes(0x80 | c for c in b)),
        st.binary(max_size=24).map(lambda b: bytes(0x80 | c for c in b)),
    )
    def test_the_bytes_around_a_withheld_value_come_back_exactly(
        self, before: bytes, after: bytes
    ) -> None:
        """Bytes that are not UTF-8 are kept as they came; only the value changes."""
        middle = f" card {CARD} ok ".encode()
        out = _answered(before + middle + after, "text/plain")
        assert out == before + b" card [REDACTED:credit_card] ok " + after

    def test_an_original_the_charset_cannot_write_is_replaced_not_lost(self) -> None:
        """A Latin-1 answer echoing the token of "michał@…": the caller gets the answer
        (with "?" for the letter Latin-1 lacks), not an error, and no token."""
        guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
        sent: list[bytes] = []

        def echo(request: httpx.Request) -> httpx.Response:
            sent.append(request.read())
            token = TOKEN_RE.search(request.read().decode())
            assert token is not None
            body = f"Wrote to {token.group()} café".encode("latin-1")
            return httpx.Response(
                200, content=body, headers={"content-type": "text/plain; charset=latin-1"}
            )

        client = guard.http_client(transport=httpx.MockTransport(echo))
        with guard.context(purpose="inference"):
            answer = client.post(
                "https://api.openai.com/v1/chat/completions",
                json={
                    "model": "m",
                    "messages": [{"role": "user", "content": "michał@example.com"}],
                },
            )
        assert b"micha" not in sent[0]
        assert answer.content == "Wrote to micha?@example.com café".encode("latin-1")

    def test_media_is_passed_through_unread(self) -> None:
        """Audio or images are not text: they are not rewritten, whatever bytes they hold."""
        body = b"\xff\xfb" + f"card {CARD}".encode()
        assert _answered(body, "audio/mpeg") == body


def test_a_lone_surrogate_escape_goes_out_as_the_escape_it_was() -> None:
    """JSON may escape half a surrogate pair (``"\\ud800"``), which has no UTF-8: a
    body holding one and a value to protect used to fail with UnicodeEncodeError; it goes
    out escaped as it came, the value tokenized, and the answer restores the same way."""
    guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
    sent: list[bytes] = []

    def echo(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        text = json.loads(request.read())["messages"][0]["content"]
        answer = json.dumps({"choices": [{"message": {"content": text}}]})  # escaped
        return httpx.Response(
            200, content=answer.encode(), headers={"content-type": "application/json"}
        )

    body = b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800 mail EMAIL"}]}'
    client = guard.http_client(transport=httpx.MockTransport(echo))
    with guard.context(purpose="inference"):
        answer = client.post(
            "https://api.openai.com/v1/chat/completions",
            content=body.replace(b"EMAIL", EMAIL.encode()),
            headers={"content-type": "application/json"},
        )
    assert EMAIL.encode() not in sent[0]
    content = json.loads(sent[0])["messages"][0]["content"]
    assert content.startswith("\ud800 mail ") and TOKEN_RE.search(content)
    assert answer.json()["choices"][0]["message"]["content"] == f"\ud800 mail {EMAIL}"


class TestHeaderBytes:
    """Header values that are not ASCII text pass through the transport as bytes: they
    used to be written back as ASCII whenever a body was rebuilt, which raised
    UnicodeEncodeError for a UTF-8 value (a request that never went out, an answer the
    caller paid for and never got)."""

    NOTE = "Grüße".encode()  # UTF-8
    LATIN = b"caf\xe9"  # not UTF-8: httpx reads such headers as ISO-8859-1

    @staticmethod
    def _echo(seen: list[httpx.Request], headers: list[tuple[bytes, bytes]]) -> Any:
        """A model that answers the request's text (its tokens) with ``headers``."""

        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            text = json.loads(request.read())["messages"][0]["content"]
            answer = {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            }
            return httpx.Response(
                200,
                headers=[(b"content-type", b"application/json"), *headers],
                content=json.dumps(answer).encode(),
            )

        return handle

    def _call(
        self, headers_in: list[tuple[bytes, bytes]], headers_out: list[tuple[bytes, bytes]]
    ) -> tuple[httpx.Request, httpx.Response]:
        guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
        seen: list[httpx.Request] = []
        client = guard.http_client(transport=httpx.MockTransport(self._echo(seen, headers_out)))
        with guard.context(purpose="inference"):
            answer = client.post(
                "https://api.openai.com/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": f"mail {EMAIL}"}]},
                headers=headers_in,
            )
        assert len(seen) == 1
        return seen[0], answer

    @pytest.mark.parametrize("value", [NOTE, LATIN], ids=["utf-8", "latin-1"])
    def test_a_request_header_goes_out_as_the_caller_wrote_it(self, value: bytes) -> None:
        upstream, answer = self._call([(b"X-Note", value)], [])
        assert (b"X-Note", value) in upstream.headers.raw
        assert EMAIL.encode() not in upstream.read()
        assert answer.json()["choices"][0]["message"]["content"] == f"mail {EMAIL}"

    def test_a_protected_header_beside_one_that_is_not_ascii(self) -> None:
        """A header value that is data is tokenized; the others keep their bytes."""
        upstream, _answer = self._call([(b"x-note", self.NOTE), (b"x-user", EMAIL.encode())], [])
        raw = dict(upstream.headers.raw)
        assert raw[b"x-note"] == self.NOTE
        assert EMAIL.encode() not in raw[b"x-user"]
        assert TOKEN_RE.fullmatch(raw[b"x-user"].decode())

    @pytest.mark.parametrize("value", [NOTE, LATIN], ids=["utf-8", "latin-1"])
    def test_an_answer_header_comes_back_as_the_model_sent_it(self, value: bytes) -> None:
        _upstream, answer = self._call([], [(b"X-Note", value)])
        assert (b"X-Note", value) in answer.headers.raw
        assert answer.json()["choices"][0]["message"]["content"] == f"mail {EMAIL}"
        assert answer.headers["content-length"] == str(len(answer.content))

    def test_through_the_openai_sdk(self) -> None:
        guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
        seen: list[httpx.Request] = []
        transport = httpx.MockTransport(self._echo(seen, [(b"x-note", self.NOTE)]))
        client = openai.OpenAI(
            http_client=guard.http_client(transport=transport),
            base_url="https://api.openai.com/v1",
            api_key="test",
            max_retries=0,
        )
        with guard.context(purpose="inference"):
            raw = client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": f"mail {EMAIL}"}]
            )
        assert raw.parse().choices[0].message.content == f"mail {EMAIL}"
        assert raw.headers["x-note"] == "Grüße"
        assert EMAIL.encode() not in seen[0].read()

    def test_a_streamed_answer(self) -> None:
        guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])

        def handle(request: httpx.Request) -> httpx.Response:
            token = TOKEN_RE.search(request.read().decode())
            assert token is not None
            chunk = {"choices": [{"index": 0, "delta": {"content": token.group()}}]}
            body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
            return httpx.Response(
                200,
                headers=[(b"content-type", b"text/event-stream"), (b"x-note", self.NOTE)],
                content=body,
            )

        client = guard.http_client(transport=httpx.MockTransport(handle))
        with (
            guard.context(purpose="inference"),
            client.stream(
                "POST",
                "https://api.openai.com/v1/chat/completions",
                json={
                    "model": "m",
                    "stream": True,
                    "messages": [{"role": "user", "content": EMAIL}],
                },
            ) as answer,
        ):
            body = answer.read()
        assert (b"x-note", self.NOTE) in answer.headers.raw
        assert EMAIL.encode() in body

    def test_async(self) -> None:
        guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
        seen: list[httpx.Request] = []
        transport = httpx.MockTransport(self._echo(seen, [(b"x-note", self.NOTE)]))

        async def go() -> httpx.Response:
            async with guard.async_http_client(transport=transport) as client:
                with guard.context(purpose="inference"):
                    return await client.post(
                        "https://api.openai.com/v1/chat/completions",
                        json={"model": "m", "messages": [{"role": "user", "content": EMAIL}]},
                        headers=[(b"x-in", self.LATIN)],
                    )

        answer = asyncio.run(go())
        assert (b"x-in", self.LATIN) in seen[0].headers.raw
        assert (b"x-note", self.NOTE) in answer.headers.raw
        assert answer.json()["choices"][0]["message"]["content"] == EMAIL

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüßéèçñøłžß", min_size=1, max_size=12),
            min_size=1,
            max_size=4,
        ),
        st.sampled_from(["utf-8", "latin-1"]),
    )
    def test_headers_nobody_protects_pass_byte_for_byte(
        self, values: list[str], codec: str
    ) -> None:
        """Any header the guard has nothing to do with reaches the model, and the
        model's reaches the caller, in the bytes it was written in; only Content-Length
        follows the rewritten body."""
        wanted = [
            (f"x-note-{i}".encode(), value.encode(codec, "replace"))
            for i, value in enumerate(values)
        ]
        upstream, answer = self._call(wanted, wanted)
        for header in wanted:
            assert header in upstream.headers.raw
            assert header in answer.headers.raw


class TestAnswerKeys:
    """A value written as an object key of an answer is withheld too (#16)."""

    @pytest.mark.parametrize(
        "answer",
        [
            {"choices": [{"message": {"content": "hi", "extra": {CARD: 1}}}]},
            {"choices": [{"message": {"content": "hi"}}], CARD: "x"},
            {"choices": [{"message": {"content": json.dumps({"cards": {CARD: "v"}})}}]},
            {"choices": [{"message": {"content": "hi"}, "logprobs": [{CARD: [1]}]}]},
        ],
        ids=["nested", "top-level", "in JSON text", "in a list"],
    )
    def test_a_key_that_holds_a_value_is_redacted(self, answer: dict[str, Any]) -> None:
        shown = _answered(json.dumps(answer).encode(), "application/json").decode()
        assert CARD not in shown
        assert "[REDACTED:credit_card]" in shown

    def test_plain_keys_leave_the_answer_as_it_came(self) -> None:
        body = json.dumps({"choices": [{"message": {"content": "hi", "meta": {"a": 1}}}]})
        assert _answered(body.encode(), "application/json") == body.encode()

    def test_a_token_in_a_key_comes_back_as_the_original(self) -> None:
        """The direct door tokenizes keys of the caller's data; restore puts them back."""
        guard = aiguard.Guard(_POLICY, sinks=[InMemorySink()])
        data = {"jane.doe@example.com": {"note": "call +1 415 555 0134"}}
        with guard.context(purpose="inference"):
            protected = guard.protect(data, destination="openai")
        assert "jane.doe@example.com" not in json.dumps(protected.payload)
        assert guard.restore(protected.payload, protected) == data


class TestAzureAndCompatible:
    def test_azure_deployment_paths(self) -> None:
        """Azure OpenAI: /openai/deployments/<name>/chat/completions?api-version=..."""
        fake = FakeModel()
        policy = aiguard.Policy(
            destinations={
                "azure": aiguard.DestinationPolicy(
                    base_url="https://acme.openai.azure.com/openai",
                    approved=True,
                    purposes=["inference"],
                )
            }
        )
        sink = InMemorySink()
        guard = aiguard.Guard(policy, sinks=[sink])
        client = openai.AzureOpenAI(
            azure_endpoint="https://acme.openai.azure.com",
            api_version="2024-10-21",
            api_key="k",
            http_client=guard.http_client(transport=fake.transport),
            max_retries=0,
        )
        with guard.context(purpose="inference"):
            reply = client.chat.completions.create(
                model="gpt4o-deploy", messages=[{"role": "user", "content": f"mail {EMAIL}"}]
            )
        assert reply.choices[0].message.content == f"Echo: mail {EMAIL}"
        assert "/deployments/gpt4o-deploy/chat/completions" in fake.requests[0].url
        assert_no_raw_values(fake, RAW)
        assert sink.calls()[0]["gen_ai.operation.name"] == "chat"


_HEADER_NAMES = ["Content-Type", "content-encoding", "Idempotency-Key", "X-Stainless-Retry-Count"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_HEADER_NAMES),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
        ),
        max_size=6,
    )
)
def test_headers_read_once_answer_as_the_library_does(pairs: list[tuple[str, str]]) -> None:
    """The transport reads a request's headers once into a table; every lookup it makes
    there answers what the library's ``headers.get`` answers, repeated headers included."""
    from aiguard.doors.transport import _by_name

    headers = httpx.Headers(pairs)
    table = _by_name(headers.multi_items())
    for name in _HEADER_NAMES:
        assert table.get(name.lower()) == headers.get(name)
