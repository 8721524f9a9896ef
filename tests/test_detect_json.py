"""detect_json: tags, key names and values decide; paths are reported; depth fails closed."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from aiguard.classify import Classified, DepthLimitExceeded, Level, detect_json


class Customer(BaseModel):
    name: Annotated[str, Classified(Level.SENSITIVE, "person")]
    notes: str
    contact: dict[str, str]


class TestDetectJson:
    def test_paths_keys_and_values(self) -> None:
        """Key names classify whole values; strings are scanned; list indices are in paths."""
        payload = {
            "user": {"Email": "a@b.co", "dob": "1990-01-02"},
            "messages": [{"content": "hi"}, {"content": "card 4111 1111 1111 1111"}],
            "count": 3,
            "ok": True,
        }
        found = [(f.path, f.kind, f.source) for f in detect_json(payload)]
        assert found == [
            ("user.Email", "email", "key"),
            ("user.dob", "date_of_birth", "key"),
            ("messages[1].content", "credit_card", "value"),
        ]

    def test_offsets_index_the_string(self) -> None:
        """Value findings carry offsets into that string."""
        text = "mail jane@example.com"
        (f,) = detect_json({"note": text})
        assert text[f.start : f.end] == "jane@example.com"

    def test_classified_tags_win(self) -> None:
        """A pydantic Classified tag decides for its field; other fields are still scanned."""
        model = Customer(name="Jane Doe", notes="ip 10.1.2.3", contact={"phone": "x"})
        found = {(f.path, f.kind, f.source) for f in detect_json(model)}
        assert found == {
            ("name", "person", "tag"),
            ("notes", "ip_address", "value"),
            ("contact.phone", "phone", "key"),
        }

    def test_depth_limit_fails_closed(self) -> None:
        """Nesting beyond the limit raises rather than skipping what lies deeper."""
        node: dict[str, object] = {"email": "a@b.co"}
        for _ in range(100):
            node = {"x": node}
        with pytest.raises(DepthLimitExceeded):
            detect_json(node)
        assert detect_json(node, max_depth=200)[0].kind == "email"

    def test_kinds_filter(self) -> None:
        """``kinds`` limits key and value findings alike."""
        payload = {"email": "a@b.co", "note": "4111 1111 1111 1111"}
        assert [f.kind for f in detect_json(payload, kinds=["credit_card"])] == ["credit_card"]
