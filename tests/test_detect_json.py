"""detect_json: tags, key names and values decide; paths are reported; depth fails closed."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aiguard.classify import Classified, DepthLimitExceeded, Level, detect_json
from aiguard.classify.structured import KEY_KINDS


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


class TestValueNamedBySibling:
    """Name/value pairs and FHIR resources name a value's kind beside it, not as its key."""

    PATIENT: ClassVar[dict[str, object]] = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "https://example.org/ids", "value": "0b7d2c4e-source-record"},
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "MR",
                            "display": "Medical Record Number",
                        }
                    ],
                    "text": "Medical Record Number",
                },
                "system": "http://hospital.example.org",
                "value": "8c2f4d19-7a3e-4b6f-a1d2-93e0c5b7f841",
            },
            {
                "type": {"coding": [{"code": "DL"}]},
                "system": "urn:oid:2.16.840.1.113883.4.3.25",
                "value": "S12345678",
            },
            {"type": {"text": "Passport Number"}, "value": "X12345678X"},
        ],
        "telecom": [
            {"system": "phone", "value": "5552017788", "use": "home"},
            {"system": "fax", "value": "5552017789"},
        ],
    }

    def test_a_fhir_identifier_and_contact_point_are_read_by_their_type(self) -> None:
        """type.text, type.coding display or its HL7 v2-0203 code, and ContactPoint.system."""
        found = [(f.path, f.kind, f.source) for f in detect_json(self.PATIENT)]
        assert found == [
            ("identifier[1].value", "medical_record_number", "key"),
            ("identifier[2].value", "driver_license", "key"),
            ("identifier[3].value", "passport", "key"),
            ("telecom[0].value", "phone", "key"),
            ("telecom[1].value", "phone", "key"),
        ]

    def test_a_name_value_pair_reads_as_the_named_key(self) -> None:
        fields = [
            {"name": "SSN", "value": "536228726"},
            {"field": "Date of birth", "value": "12.3.85"},
            {"label": "note", "value": "call me"},
            {"type": "text", "value": "hello"},
        ]
        found = [(f.path, f.kind) for f in detect_json(fields)]
        assert found == [("[0].value", "us_ssn"), ("[1].value", "date_of_birth")]


_NAMING = st.sampled_from(["type", "system", "name", "field", "label", "key", "kind"])
_VALUES = st.one_of(st.text(min_size=1, max_size=30), st.integers(min_value=0))


@settings(max_examples=200, deadline=None)
@given(
    naming=_NAMING,
    label=st.sampled_from(sorted(KEY_KINDS)),
    value=_VALUES,
    dressed=st.sampled_from(["plain", "title", "spaced", "text", "display"]),
)
def test_any_kind_naming_label_beside_a_value_gives_the_value_that_kind(
    naming: str, label: str, value: str | int, dressed: str
) -> None:
    """Whatever the value holds, the sibling's label decides, as its key would."""
    written: object = {
        "plain": label,
        "title": label.title(),
        "spaced": " ".join(label),
        "text": {"text": label},
        "display": {"coding": [{"system": "x", "display": label.upper()}]},
    }[dressed]
    if dressed == "spaced" and len(label) < 2:
        written = label
    found = detect_json({naming: written, "value": value})
    assert ("value", KEY_KINDS[label], "key") in [(f.path, f.kind, f.source) for f in found]
