"""The built-in detector: kinds, precision against distractors, bad input, linear time."""

from __future__ import annotations

import base64
import itertools
import operator
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiguard.classify import (
    EVIDENCE_SCORE,
    MIN_SCORE,
    Finding,
    KnownValue,
    KnownValuesDetector,
    Level,
    RegexDetector,
    builtin_detector,
    detect,
    merge_findings,
)
from aiguard.classify.kinds import DEFAULT_LEVELS

_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "-----END RSA PRIVATE KEY-----"
)

# One valid example per kind, with the text around it.
EXAMPLES = [
    ("email", "write to jane.doe@example.com today", "jane.doe@example.com"),
    ("email", "IDN: ana@bücher.de ok", "ana@bücher.de"),
    ("phone", "call (415) 555-0132 now", "(415) 555-0132"),
    ("phone", "ring +44 20 7946 0958 please", "+44 20 7946 0958"),
    ("phone", "Telefon 030 12345678 bitte", "030 12345678"),
    ("url_credentials", "db https://bob:s3cretPw@db.example.com/x", "bob:s3cretPw"),
    ("credit_card", "card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
    ("credit_card", "amex 3782-822463-10005 ok", "3782-822463-10005"),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 thanks", "DE89 3704 0044 0532 0130 00"),
    ("iban", "to GB82 WEST 1234 5698 7654 32.", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "NL91ABNA0417164300", "NL91ABNA0417164300"),
    ("iban", "wire to DE89-3704-0044-0532-0130-00.", "DE89-3704-0044-0532-0130-00"),
    ("aba_routing", "routing number 011000015", "011000015"),
    ("swift_bic", "BIC: DEUTDEFF500", "DEUTDEFF500"),
    ("us_ssn", "SSN 078-05-1121 on file", "078-05-1121"),
    ("us_ssn", "my ssn is 219099998", "219099998"),
    ("us_itin", "ITIN 912-70-1234", "912-70-1234"),
    ("uk_nino", "NI number AB 12 34 56 C.", "AB 12 34 56 C"),
    ("uk_nino", "nino AB123456C", "AB123456C"),
    ("uk_nhs", "NHS number 943 476 5919.", "943 476 5919"),
    ("uk_nhs", "my nhs no is 9434765919", "9434765919"),
    ("passport", "passport C01X00T47 exp 2031", "C01X00T47"),
    ("passport", "Passport number: 123456789.", "123456789"),
    ("passport", '{"passport_no": "12AB34567"}', "12AB34567"),
    ("passport", "ZX4481907 is my passport number", "ZX4481907"),
    ("passport", "QR7719024 es mi número de pasaporte", "QR7719024"),
    ("driver_license", "my driver license is H12234567.", "H12234567"),
    ("driver_license", "DL# D123-4567-8901 (exp. 2029)", "D123-4567-8901"),
    ("driver_license", '{"drivers_license": "S99966334"}', "S99966334"),
    ("medical_record_number", "MRN: 40021934, admitted 3/2", "40021934"),
    ("medical_record_number", "MRN 40021934 2 visits", "40021934"),
    ("medical_record_number", "Medical record number is 123-456-789.", "123-456-789"),
    ("medical_record_number", "00123456 is the patient's MRN.", "00123456"),
    ("driver_license", "S99966334 is my driver's licence number", "S99966334"),
    ("account_number", "12345678 es mi número de cuenta", "12345678"),
    ("account_number", "4155550132 is my bank account, not a phone", "4155550132"),
    ("account_number", "my bank account number is 912803456", "912803456"),
    ("account_number", "Account number: 12 3456 789 at the branch", "12 3456 789"),
    ("account_number", "acct no. 4155550132, not a phone", "4155550132"),
    ("de_tax_id", "Steuer-ID 36574261809", "36574261809"),
    ("de_tax_number", "Steuernummer: 181/815/08155.", "181/815/08155"),
    ("de_tax_number", "meine St.-Nr. ist 2181081508155", "2181081508155"),
    ("de_vat_id", "USt-IdNr.: DE136695976", "DE136695976"),
    ("fr_nir", "NIR 2 95 10 99 126 111 93", "2 95 10 99 126 111 93"),
    ("es_dni", "DNI 12345678Z", "12345678Z"),
    ("es_dni", "con DNI 12345678-Z.", "12345678-Z"),
    ("es_nie", "NIE X1234567L", "X1234567L"),
    ("es_nie", "extranjero Y7654321-G", "Y7654321-G"),
    ("it_codice_fiscale", "CF RSSMRA85T10A562S", "RSSMRA85T10A562S"),
    ("nl_bsn", "BSN 111222333", "111222333"),
    ("in_aadhaar", "aadhaar 2341 2341 2346", "2341 2341 2346"),
    ("in_pan", "PAN ABCPE1234F", "ABCPE1234F"),
    ("au_tfn", "my TFN is 123 456 782.", "123 456 782"),
    ("au_medicare", "Medicare number 2123 45670 1", "2123 45670 1"),
    ("ca_sin", "SIN: 130-692-544", "130-692-544"),
    ("ca_sin", "mon NAS est 130 692 544", "130 692 544"),
    ("br_cpf", "CPF 390.533.447-05", "390.533.447-05"),
    ("br_cpf", "o titular (390.533.447-05) assina", "390.533.447-05"),
    ("br_cpf", "meu cpf é 39053344705", "39053344705"),
    ("pl_pesel", "numer PESEL: 44051401359", "44051401359"),
    ("sg_nric", "NRIC S8944027J", "S8944027J"),
    ("sg_nric", "FIN G6046409Q on the pass", "G6046409Q"),
    ("ip_address", "from 192.168.0.1 and", "192.168.0.1"),
    ("ip_address", "allow 203.0.113.7/32 only", "203.0.113.7"),
    ("ip_address", "v6 2001:db8::8a2e:370:7334 up", "2001:db8::8a2e:370:7334"),
    ("mac_address", "mac 00:1A:2B:3C:4D:5E", "00:1A:2B:3C:4D:5E"),
    ("mac_address", "mac 00-1A-2B-3C-4D-5E", "00-1A-2B-3C-4D-5E"),
    ("mac_address", "interface 001b.54c2.9a7f is up", "001b.54c2.9a7f"),
    ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "id: ASIAZ0R8XW91QK3BPT6N", "ASIAZ0R8XW91QK3BPT6N"),
    (
        "aws_secret_key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("github_token", "tok ghp_" + "aB3" * 12, "ghp_" + "aB3" * 12),
    ("github_token", "github_pat_" + "A1b" * 20, "github_pat_" + "A1b" * 20),
    ("slack_token", "xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012-abcdefABCDEF"),
    (
        "slack_webhook",
        "post https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghij1234567890ABCD",
        "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghij1234567890ABCD",
    ),
    (
        "openai_key",
        "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
    ),
    ("anthropic_key", "sk-ant-api03-" + "Ab1_" * 10, "sk-ant-api03-" + "Ab1_" * 10),
    ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (
        "google_api_key",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
    ),
    ("jwt", "Bearer " + _JWT, _JWT),
    ("private_key", "key:\n" + _PEM + "\nend", _PEM),
    ("password", "password=Hunter2xyz!", "Hunter2xyz!"),
    ("secret", 'api_key: "q8Fz2LmP9xK3"', "q8Fz2LmP9xK3"),
    ("date_of_birth", "born on 12 March 1985, ok", "12 March 1985"),
    ("date_of_birth", "DOB: 1985-03-12", "1985-03-12"),
    ("age", "she is 42 years old", "42"),
    ("age", "he retired at the age of 61.", "61"),
    ("age", "and i'm 31 y/o.", "31"),
    ("age", "My brother just turned 60", "60"),
    ("age", "I'll turn 23 next week.", "23"),
    ("age", "Written when he was 78.", "78"),
]


class TestKinds:
    @pytest.mark.parametrize(("kind", "text", "value"), EXAMPLES)
    def test_each_kind_is_found_with_its_span_and_level(
        self, kind: str, text: str, value: str
    ) -> None:
        """Every built-in kind is found, spans the value exactly, and has its default level."""
        found = [f for f in detect(text) if f.kind == kind]
        assert [text[f.start : f.end] for f in found] == [value]
        assert found[0].level is DEFAULT_LEVELS[kind]
        assert 0.5 <= found[0].score <= 1.0

    def test_every_default_kind_has_an_example(self) -> None:
        """The table above covers every kind the detector knows."""
        assert {k for k, _, _ in EXAMPLES} == set(DEFAULT_LEVELS)

    def test_kinds_filter(self) -> None:
        """``kinds`` limits what is reported."""
        text = "jane@example.com 4111 1111 1111 1111"
        assert [f.kind for f in detect(text, kinds=["credit_card"])] == ["credit_card"]
        with pytest.raises(ValueError, match="unknown kinds"):
            detect(text, kinds=["nope"])

    def test_locales_filter(self) -> None:
        """National ids come from locale packs; other locales do not see them."""
        text = "DNI 12345678Z"
        assert [f.kind for f in detect(text, locales=["es"])] == ["es_dni"]
        assert detect(text, locales=["us"]) == []
        with pytest.raises(ValueError, match="unknown locale"):
            detect(text, locales=["xx"])

    def test_level_override(self) -> None:
        """A policy can override a kind's level."""
        detector = builtin_detector(levels={"email": "regulated"})
        (finding,) = detector.detect("a@example.com")
        assert finding.level is Level.REGULATED

    def test_reserved_example_values_are_still_values(self) -> None:
        """example.com, 555-01xx and published test cards are detected like any other."""
        kinds = {f.kind for f in detect("x@example.com, (212) 555-0123, 4242 4242 4242 4242")}
        assert kinds == {"email", "phone", "credit_card"}


DISTRACTORS = [
    "order #48213907 shipped",
    "ticket 123 456 782 closed",
    "ref 44051401359 done",
    "batch 39053344705 ok",
    "code S8944027A expired",
    "the sin of pride is 1 of 7",
    "invoice INV-2024-004512 paid",
    "tracking 1Z999AA10123456784",
    "tracking 9400 1000 0000 0000 0000 00",
    "id 550e8400-e29b-41d4-a716-446655440000",
    "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
    "version 4.2.1.0 and v1.2.3.4 and release 16.16.8.12",
    "at 2024-03-05T10:30:00Z and 2024-03-05 10:30:45",
    "costs $1,299.99 or €49,90 or 1,234,567.89",
    # Failing checks without a word of their kind (with one, see TestEvidence).
    "paid 4111 1111 1111 1112",  # fails Luhn
    "sent to DE88 3704 0044 0532 0130 00",  # fails mod-97
    "ref 000-12-3456 and 666-12-3456 and 123-00-4567",
    "INTRODUCTORY offer on S3, C4, H1 and D3",
    "public policy on licences",
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 and a1b2c3d",
    "std::vector<int> and a::b::c and 10:30:45",
    "gpt-4o-2024-08-06 and claude-3-5-sonnet-20241022",
    "sk-learn-compatible-estimator-thing",
    "password: required, token = None, password=${DB_PASSWORD}",
    "ratio 1920x1080 at 59.94 fps, 12.5% off",
    "coordinates -77.069009, 99.610916",
    "user_id_12345 MAX_RETRIES_3",
    "bare 123456789 and 36574261809 and 111222333",  # checksum-valid ids, but no label
    "ref 9434765919 and 4444444444",  # NHS check passes, but no label (and ten equal digits)
    # A passport's label with no number after it, or a word or short code.
    "my passport expired in 2019; passport 2x2 photos; passport number is valid until 2030",
    "passport photos at booth 12345678 and passports renewed: 12",
    # "age" ends a sentence, and the number after it is part of a code (found by the
    # corpus of benchmarks/detect.py).
    "the computer age. 1ZJ827Y26033278242, and age 1ZJ82",
    # Broadcast and all-zero hardware addresses name no device; dotted numbers that are
    # not three groups of four (versions, an address's prefix length out of range).
    "to ff:ff:ff:ff:ff:ff or 00-00-00-00-00-00 or FFFF.FFFF.FFFF",
    "build 2024.0512.1130.7 and 1.2.3.4/33 and 10.0.0.0/123",
    "numbers 12345678-A and 1234567-B and 123456789-C in a list",
    # "Account" alone names a customer's account, not a bank's; a label's sentence ends
    # before the number; a licence that is not a driver's; a label with a short number.
    "my account 12345678 was charged twice; account ACC-20417783",
    "driver license expired. 12345678 steps later; MRN: 1234 and patient 12345678",
    "software license number 12345678 and license key 87654321",
    "dl 12345678 files; DL 2024.01.15; account number 12/2031; MRN 4.5.6789",
    # A label after the number names it only as the sentence's complement: not "DL"
    # (a queue, a download), not "account" alone, not a word that only starts like one.
    "ticket 48213377 is the DL queue; 12345678 is my account; 12345678 is my accountant",
    # A number after "turn" the noun, or a person's number that is no age.
    "In turn 5, she was 5 minutes late; the answer is 42. Return 200. Turned 90 degrees",
    # A Steuernummer's digits without its label, a VAT id's without its word.
    "ref 181/815/08155 and 2181081508155 and DE136695976",
    # A URL's password masked or left to a template is no credential.
    "postgres://app:${DB_PASSWORD}@db:5432/x and http://watch::********@proxy.example.com",
]


def test_a_list_of_passport_numbers_is_found_whole_and_ends_where_the_list_does() -> None:
    """Each number of a list after a plural label; what follows the list is not taken."""
    text = "Passports: C01X00T47, ZX4481907 and QR7719024; then 2 days and RT12345678 later"
    found = [text[f.start : f.end] for f in detect(text) if f.kind == "passport"]
    assert found == ["C01X00T47", "ZX4481907", "QR7719024"]
    # A word of another length after "and" ends the list.
    text = "passport C01X00T47 and address12345 on file"
    assert [text[f.start : f.end] for f in detect(text)] == ["C01X00T47"]


class TestEvidence:
    @pytest.mark.parametrize(
        ("text", "value", "kind"),
        [
            ("card 4111 1111 1111 1112", "4111 1111 1111 1112", "credit_card"),
            ("IBAN DE88 3704 0044 0532 0130 00", "DE88 3704 0044 0532 0130 00", "iban"),
            ("my account: DE88370400440532013000.", "DE88370400440532013000", "iban"),
            ("SSN 912-34-5678 (a test value)", "912-34-5678", "us_ssn"),
            ("social security number 000-12-3456", "000-12-3456", "us_ssn"),
            ("BSN 111222334", "111222334", "nl_bsn"),
            ("CPF 390.533.447-06", "390.533.447-06", "br_cpf"),
            ("PESEL 44051401358", "44051401358", "pl_pesel"),
            ("NHS number 943 476 5910", "943 476 5910", "uk_nhs"),
        ],
    )
    def test_shape_and_a_word_of_its_kind_protect_a_failing_value(
        self, text: str, value: str, kind: str
    ) -> None:
        """A checksum or issuance failure next to a word of the kind: found, scored lower."""
        found = detect(text)
        assert [(text[f.start : f.end], f.kind) for f in found] == [(value, kind)]
        assert MIN_SCORE <= found[0].score == EVIDENCE_SCORE < 0.9

    def test_without_the_word_validation_decides(self) -> None:
        """The same values with neutral words around them are not findings."""
        for text in ("paid 4111 1111 1111 1112", "x 912-34-5678 y", "DE88 3704 0044 0532 0130 00"):
            assert detect(text) == [], text

    def test_valid_values_keep_their_full_score(self) -> None:
        """Evidence only lowers the score of values that fail their checks."""
        (found,) = detect("SSN 536-22-8712")
        assert found.score > EVIDENCE_SCORE


class TestPrecision:
    @pytest.mark.parametrize("text", DISTRACTORS)
    def test_distractors_do_not_fire(self, text: str) -> None:
        """Codes, versions, timestamps, prices, bad checksums and identifiers are not values."""
        assert [(text[f.start : f.end], f.kind) for f in detect(text)] == []

    def test_context_words_are_whole_words(self) -> None:
        """A context word inside another word ("ssn" in "lessnuanced") does not count."""
        assert detect("ssn 219099998")[0].kind == "us_ssn"
        assert detect("lessnuanced 219099998") == []

    @pytest.mark.parametrize(
        ("written", "kind"),
        [
            ("ab123456c", "uk_nino"),
            ("12345678z", "es_dni"),
            ("rssmra85t10a562s", "it_codice_fiscale"),
        ],
    )
    def test_an_id_with_lower_case_letters_needs_a_word_of_its_kind(
        self, written: str, kind: str
    ) -> None:
        """Ids with letters are written in capitals: in lower case, prose ("ok 875769b")
        is far likelier than an id, so only a label makes it one."""
        assert detect(f"then {written} and more") == []
        assert [f.kind for f in detect(f"then {written.upper()} and more")] == [kind]
        label = {"uk_nino": "NINO", "es_dni": "DNI", "it_codice_fiscale": "codice fiscale"}[kind]
        assert [f.kind for f in detect(f"my {label} is {written}")] == [kind]

    def test_order_number_is_not_a_phone_even_near_a_phone_word(self) -> None:
        """The label right before a number wins over a phone word further back."""
        assert detect("my cell broke, order #0529193 please") == []


def _check_invariants(text: str, found: list[Finding]) -> None:
    last = 0
    for f in found:
        assert 0 <= f.start < f.end <= len(text)
        assert f.start >= last
        last = f.end


_FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in "0123456789"}
_ARABIC_INDIC = {ord(c): ord(c) - ord("0") + 0x0660 for c in "0123456789"}


class TestBadInput:
    def test_empty(self) -> None:
        """An empty string has no findings."""
        assert detect("") == []

    def test_nul_surrogates_rtl_mixed_scripts(self) -> None:
        """NUL bytes, lone surrogates and right-to-left text neither crash nor hide values."""
        text = "\x00\ud800 مرحبا jane@example.com \u202e4111 1111 1111 1111\u202c 你好 \udfff"
        found = detect(text)
        assert {f.kind for f in found} == {"email", "credit_card"}
        _check_invariants(text, found)

    def test_full_width_and_arabic_indic_digits(self) -> None:
        """Digits of other scripts are folded before matching; offsets stay in the original."""
        card = "4111 1111 1111 1111".translate(_FULL_WIDTH)
        ssn = "078-05-1121".translate(_ARABIC_INDIC)
        text = f"card {card}, ssn {ssn}"
        found = detect(text)
        assert [(text[f.start : f.end], f.kind) for f in found] == [
            (card, "credit_card"),
            (ssn, "us_ssn"),
        ]
        assert card != "4111 1111 1111 1111"

    def test_zero_width_and_lookalikes_inside_values(self) -> None:
        """Invisible characters and Cyrillic look-alikes inside a value do not hide it."""
        card = "4111\u200b1111\u200d1111\ufeff1111"
        email = "j\u043ehn@ex\u0430mple.com"  # Cyrillic o and a
        text = f"pay {card} or mail {email}\u200b."
        found = detect(text)
        assert [(text[f.start : f.end], f.kind) for f in found] == [
            (card, "credit_card"),
            (email, "email"),
        ]

    def test_ten_megabytes(self) -> None:
        """A 10 MB text is scanned and every planted value is found."""
        chunk = "lorem ipsum dolor sit amet, consectetur 12 adipiscing. " * 18
        text = (chunk + "mail a@example.com ") * 1000
        text = text * (10_000_000 // len(text) + 1)
        found = detect(text)
        assert len(found) == text.count("a@example.com")
        _check_invariants(text, found)

    @settings(max_examples=200, deadline=None)
    @given(
        prefix=st.text(max_size=30),
        noise=st.lists(
            st.sampled_from(["\u200b", "\u200d", "\u00ad", "\u2060", "\ufeff"]), max_size=16
        ),
        seed=st.integers(0, 10**6),
        suffix=st.text(max_size=30),
    )
    def test_offsets_map_back_under_normalization(
        self, prefix: str, noise: list[str], seed: int, suffix: str
    ) -> None:
        """With invisible characters anywhere inside a value, the finding covers exactly it."""
        value = "4111111111111111"
        chars = list(value)
        for i, mark in enumerate(noise):
            pos = (seed + i * 7) % (len(chars) - 1) + 1
            chars.insert(pos, mark)
        written = "".join(chars)
        text = f"{prefix} {written} {suffix}"
        found = detect(text)
        _check_invariants(text, found)
        cards = [f for f in found if f.kind == "credit_card"]
        start = len(prefix) + 1
        if any(f.start < start + len(written) and f.end > start for f in found if f not in cards):
            return  # a random prefix or suffix made a longer value around it
        assert [(f.start, f.end) for f in cards] == [(start, start + len(written))]

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=300))
    def test_any_text_gives_sorted_non_overlapping_in_bounds_findings(self, text: str) -> None:
        """Arbitrary Unicode never crashes detection or breaks the output contract."""
        _check_invariants(text, detect(text))


ADVERSARIAL = {
    "digits": "1",
    "spaced digits": "1 ",
    "dashed": "12-",
    "dotted": "1.",
    "at signs": "a@",
    "email-ish": "a.b@c.",
    "colons": "a:",
    "hex colons": "ab:",
    "letters and digits": "A1",
    "prefixes": "sk-",
    "jwt-ish": "eyJ.",
    "pem": "-----BEGIN RSA PRIVATE KEY-----a",
    "assignments": "password=",
    "parens": "(1) ",
    "full-width": "\uff11 ",
    "zero-width": "1\u200b",
}


class TestNumbersSideBySide:
    @settings(max_examples=100, deadline=None)
    @given(other=st.integers(10**6, 10**20 - 1), before=st.booleans())
    def test_a_card_next_to_a_long_number_is_found(self, other: int, before: bool) -> None:
        """A card written whole beside another long number (an order id, a second card)
        is found: groups wider than any written grouping are numbers of their own."""
        card = "4111111111111111"
        text = f"ids {other} {card} ok" if before else f"ids {card} {other} ok"
        start = text.index(card)
        cards = [(f.start, f.end) for f in detect(text) if f.kind == "credit_card"]
        assert (start, start + len(card)) in cards

    def test_a_grouping_that_carries_on_is_one_longer_number(self) -> None:
        # "4111 1111 1111 1111 0000": the card's grouping goes on past it.
        assert not [f for f in detect("ref 4111 1111 1111 1111 0000") if f.kind == "credit_card"]


@pytest.mark.slow
class TestLinearTime:
    @pytest.mark.parametrize("unit", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
    def test_ten_times_the_text_costs_far_less_than_a_hundred_times_the_time(
        self, unit: str
    ) -> None:
        """No pattern backtracks catastrophically: time grows linearly with the input.

        300 KB against 30 KB: quadratic work would show as a 100x ratio, so the sizes
        only need to be large enough for the timer, not large in themselves. The bound
        is 25, not 10: on a loaded 2-core CI machine a linear unit measured 15.6x once
        (a 2.6 ms small run against a 40 ms large one), and n log n is still 13x.
        """
        small = unit * (30_000 // len(unit))
        large = unit * (300_000 // len(unit))

        def best(text: str) -> float:
            # CPU time of this process, best of five: other load on the machine (CI
            # neighbours, a second test worker) must not look like backtracking.
            times = []
            for _ in range(5):
                t0 = time.process_time()
                detect(text)
                times.append(time.process_time() - t0)
            return min(times)

        t_small, t_large = best(small), best(large)
        assert t_large / max(t_small, 1e-4) <= 25


class TestMerge:
    def test_higher_level_then_longer_wins(self) -> None:
        """Overlaps resolve by level, then length; output is sorted and disjoint."""
        a = Finding(0, 10, "phone", Level.SENSITIVE)
        b = Finding(5, 15, "credit_card", Level.REGULATED)
        c = Finding(16, 20, "email", Level.SENSITIVE)
        d = Finding(16, 30, "email", Level.SENSITIVE)
        assert merge_findings([a, b, c, d]) == [b, d]

    @settings(max_examples=200)
    @given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10), st.integers(0, 3))))
    def test_merge_output_is_disjoint_and_sorted(self, spans: list[tuple[int, int, int]]) -> None:
        """Whatever goes in, what comes out never overlaps and is in text order."""
        findings = [Finding(s, s + n, "k", Level(lv)) for s, n, lv in spans]
        merged = merge_findings(findings)
        assert all(f.end > f.start for f in merged)
        for x, y in itertools.pairwise(merged):
            assert x.end <= y.start
        for f in findings:  # everything dropped is empty or overlaps something kept
            if f not in merged and f.end > f.start:
                assert any(f.start < g.end and g.start < f.end for g in merged)

    def test_positional_finding_construction_still_works(self) -> None:
        """Finding(start, end, kind, level, detector) keeps working; score defaults to 1.0."""
        f = Finding(1, 2, "email", Level.SENSITIVE, "x")
        assert (f.detector, f.score) == ("x", 1.0)


class TestOtherDetectors:
    def test_regex_and_known_values_merge_with_builtins(self) -> None:
        """Policy patterns and known values go through the same detectors argument."""
        text = "ACC-12345678 for Jane Doe, jane@example.com"
        found = detect(
            text,
            detectors=[
                builtin_detector(),
                RegexDetector("account", "sensitive", r"ACC-[0-9]{8}"),
                KnownValuesDetector([KnownValue("Jane Doe", "person", Level.SENSITIVE)]),
            ],
        )
        assert [f.kind for f in found] == ["account", "person", "email"]


def test_a_dot_leader_before_an_aws_secret_is_not_part_of_it() -> None:
    """Found by the context matrix: U+2024 folds to '.', which no AWS secret contains."""
    secret = "/M4zlHTMyemAGuFUEU3HFZdBrh5zQHwLseCe+Fr5"
    text = f"AWS_SECRET_ACCESS_KEY=\u2024{secret}\u00bf, thanks"
    assert [(text[f.start : f.end], f.kind) for f in detect(text)] == [(secret, "aws_secret_key")]


_ENCRYPTED_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "Proc-Type: 4,ENCRYPTED\n"
    "DEK-Info: AES-128-CBC,3F17F5316E2BAC89A1B2C3D4E5F60718\n"
    "\n"
    "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"key:\n{_ENCRYPTED_PEM}\nthanks", _ENCRYPTED_PEM),
        # An unterminated header before a whole key: the key is still found as itself.
        (f"-----BEGIN RSA PRIVATE KEY----- oops\n{_PEM}", _PEM),
        ("-----BEGIN RSA PRIVATE KEY-----a\n" * 50 + _PEM, _PEM),
    ],
    ids=["encrypted headers", "stray header before", "many stray headers before"],
)
def test_a_private_key_is_found_whole_after_headers_and_stray_begin_lines(
    text: str, key: str
) -> None:
    found = [text[f.start : f.end] for f in detect(text) if f.kind == "private_key"]
    assert found == [key]


_prose = st.text(alphabet="abcdefgh xyz,;:!?()", max_size=20).map(lambda s: f"{s} ")


@settings(max_examples=200, deadline=None)
@given(
    before=_prose,
    after=_prose.map(lambda s: f" {s}"),
    octets=st.lists(st.integers(0, 255), min_size=4, max_size=4),
    prefix=st.integers(0, 32),
)
def test_an_address_with_its_prefix_length_is_found_over_the_address(
    before: str, after: str, octets: list[int], prefix: int
) -> None:
    address = ".".join(map(str, octets))
    text = f"{before}{address}/{prefix}{after}"
    found = [(f.start, f.end) for f in detect(text) if f.kind == "ip_address"]
    start = len(before)
    assert found == [(start, start + len(address))], text


@settings(max_examples=200, deadline=None)
@given(
    before=_prose,
    after=_prose.map(lambda s: f" {s}"),
    raw=st.binary(min_size=6, max_size=6).filter(lambda b: b not in {b"\xff" * 6, b"\0" * 6}),
    upper=st.booleans(),
)
def test_a_hardware_address_in_cisco_form_is_found(
    before: str, after: str, raw: bytes, upper: bool
) -> None:
    hexed = raw.hex().upper() if upper else raw.hex()
    written = ".".join((hexed[:4], hexed[4:8], hexed[8:]))
    text = f"{before}{written}{after}"
    found = [(f.start, f.end, f.kind) for f in merge_findings(detect(text))]
    start = len(before)
    assert (start, start + len(written), "mac_address") in found, text


def _token(alphabet: str, size: int, seed: int) -> str:
    rng = random.Random(seed)
    body = "".join(rng.choice(alphabet) for _ in range(size))
    # Every provider's keys mix classes; make sure this one does.
    return body[:-3] + "aZ7" if alphabet != "0123456789abcdef" else body[:-1] + "7"


def _snowflake_b64(user_id: int) -> str:
    return base64.urlsafe_b64encode(str(user_id).encode()).decode().rstrip("=")


def _discord_token(user_id: int, hmac_size: int, seed: int) -> str:
    first = _snowflake_b64(user_id)
    return f"{first}.{_token(_URLSAFE, 6, seed)}.{_token(_URLSAFE, hmac_size, seed + 100)}"


_ALNUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_HEX_CHARS = "0123456789abcdef"
_URLSAFE = _ALNUM_CHARS + "_-"
PROVIDER_TOKENS = [
    "https://discord.com/api/webhooks/112233445566778899/" + _token(_URLSAFE, 68, 1),
    "glpat-" + _token(_URLSAFE, 20, 2),
    "HRKU-" + _token(_URLSAFE, 60, 3),
    "pypi-AgEIcHlwaS5vcmc" + _token(_URLSAFE, 70, 4),
    "PMAK-" + _token(_HEX_CHARS, 24, 5) + "-" + _token(_HEX_CHARS, 34, 6),
    "ntn_48213907731" + _token(_ALNUM_CHARS, 35, 7),
    "secret_" + _token(_ALNUM_CHARS, 43, 8),
    "npm_" + _token(_ALNUM_CHARS, 36, 9),
    "hf_" + _token(_ALNUM_CHARS, 34, 10),
    "dop_v1_" + _token(_HEX_CHARS, 64, 11),
    "shpat_" + _token(_HEX_CHARS, 32, 12),
    "lin_api_" + _token(_ALNUM_CHARS, 40, 13),
    "SG." + _token(_URLSAFE, 22, 14) + "." + _token(_URLSAFE, 43, 15),
    "ATATT3" + _token(_URLSAFE, 186, 16),
    # Discord bot tokens: the bot's id (a snowflake) in base64, a timestamp, an HMAC.
    _discord_token(198622483471925248, 27, 17),
    _discord_token(12345678901234567890, 38, 18),
    _discord_token(80351110224678912, 27, 19),
]


@pytest.mark.parametrize("token", PROVIDER_TOKENS, ids=lambda t: t[:8])
@pytest.mark.parametrize("written", ["{}", 'TOKEN="{}"', "use {} for the deploy", "`{}`."])
def test_other_providers_tokens_are_secrets(token: str, written: str) -> None:
    """Tokens of providers without a kind of their own are found by their prefix."""
    text = written.format(token)
    assert [(text[f.start : f.end], f.kind) for f in merge_findings(detect(text))] == [
        (token, "secret")
    ]


@given(
    st.one_of(
        st.integers(10**16, 10**20 - 1).map(_snowflake_b64),
        st.builds(
            operator.add, st.sampled_from("MNO"), st.text(_ALNUM_CHARS, min_size=22, max_size=26)
        ),
    ),
    st.text(_URLSAFE, min_size=6, max_size=6),
    st.text(_URLSAFE, min_size=27, max_size=38),
)
def test_a_dotted_name_of_a_discord_tokens_shape_is_a_token_only_when_it_names_a_bot(
    first: str, middle: str, last: str
) -> None:
    """Only a first part that decodes to a user id (17 to 20 digits) makes a token: a
    qualified name of the same shape ("ModelConfigurationLoader.config.attr...") not."""
    token = f"{first}.{middle}.{last}"
    padded = first + "=" * (-len(first) % 4)
    try:
        user_id = base64.urlsafe_b64decode(padded)
    except ValueError:
        user_id = b""
    names_a_bot = 17 <= len(user_id) <= 20 and user_id.isdigit() and user_id[:1] != b"0"
    found = [(f.kind, token[f.start : f.end]) for f in merge_findings(detect(token))]
    assert (("secret", token) in found) is names_a_bot


_KEY64 = "hQ3vR8nK2pW9xL4mT7cY1bF6gJ0sD5aZ+eU3iO8kN2rV7wX4yB1hM6qP9tC0fG5jL2nS8dA3uE7oI4kR1v/Zwq=="


@pytest.mark.parametrize(
    "text",
    [
        f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={_KEY64};EndpointSuffix=x",
        f"<account_key>{_KEY64}</account_key>",
        f'{{ "AccountKey", "{_KEY64}" }}',
        f"tool.exe -storagename acme\n  -storagekey {_KEY64}\n  -container x",
    ],
)
def test_a_storage_account_key_named_a_key_is_a_secret(text: str) -> None:
    found = [(text[f.start : f.end], f.kind) for f in detect(text)]
    assert (_KEY64, "secret") in found


def test_a_sha512_digest_is_not_a_key() -> None:
    """The same 88 characters, as an integrity hash or with no key named, are left."""
    for text in (
        f'"integrity": "sha512-{_KEY64}", "key": "x"',
        f"checksum {_KEY64} of the release",
    ):
        assert [f for f in detect(text) if f.kind == "secret"] == [], text


@pytest.mark.parametrize(
    ("word", "label", "value", "kind", "window"),
    [
        ("hotel", "tel", "4155550132", "phone", 30),
        ("miss", "ss", "078051121", "us_ssn", 40),
        ("improv", "v", "10.0.0.1", None, 12),
    ],
)
def test_a_word_cut_by_the_label_window_is_no_label(
    word: str, label: str, value: str, kind: str | None, window: int
) -> None:
    """A label word is looked for in the characters before a value: where that window
    starts inside a word ("ho|tel", "mi|ss", "impro|v"), the word's tail is no label."""
    cut = word + " " * (window - len(label)) + value
    whole = label + " " * (window - len(label)) + value
    if kind is None:  # "v" before an address reads it as a version: no finding
        assert [f.kind for f in detect(cut)] == ["ip_address"]
        assert detect(whole) == []
    else:
        assert detect(cut) == []
        assert [f.kind for f in detect(whole)] == [kind]


class TestNewLocalePacks:
    @pytest.mark.parametrize(
        ("value", "valid"),
        [
            # Published examples: nric-lib's doctests and Presidio's recognizer tests
            # (the M series, issued from 2022, has a table of its own).
            ("S8944027J", True),
            ("G6046409Q", True),
            ("S2740116C", True),
            ("F2346401L", True),
            ("M4332674T", True),
            ("G6075119Q", False),
            ("S814A299Z", False),
            ("T1234567Z", False),
        ],
    )
    def test_nric_check_letter(self, value: str, valid: bool) -> None:
        from aiguard.classify._validators import sg_nric_valid

        assert sg_nric_valid(value) is valid

    @pytest.mark.parametrize(
        ("value", "valid"),
        [("2123456701", True), ("21234567011", True), ("2123258701", False), ("7123456701", False)],
    )
    def test_medicare_check_digit(self, value: str, valid: bool) -> None:
        from aiguard.classify._validators import au_medicare_valid

        assert au_medicare_valid(value) is valid

    @pytest.mark.parametrize(
        "text",
        [
            "TFN 123456782",
            "Medicare 2123456701",
            "SIN 130692544",
            "meu CPF 39053344705",
            "PESEL 44051401359",
        ],
    )
    def test_bare_digits_need_the_word(self, text: str) -> None:
        """Weak checksums: the same digits after a neutral word are not these ids."""
        digits = text.rpartition(" ")[2]
        assert detect(text)[0].kind in {"au_tfn", "au_medicare", "ca_sin", "br_cpf", "pl_pesel"}
        assert all(
            f.kind not in {"au_tfn", "au_medicare", "ca_sin", "br_cpf", "pl_pesel"}
            for f in detect(f"ref {digits} ok")
        )

    def test_json_keys_name_the_new_kinds(self) -> None:
        from aiguard.classify.structured import detect_json

        doc = {"tfn": "x", "social_insurance_number": "x", "cpf": "x", "pesel": "x", "nric": "x"}
        assert [f.kind for f in detect_json(doc)] == [
            "au_tfn",
            "ca_sin",
            "br_cpf",
            "pl_pesel",
            "sg_nric",
        ]


def _luhn_by_the_book(digits: str) -> bool:
    """Luhn as ISO/IEC 7812-1 states it: from the right, double every second digit,
    subtract 9 from a double above 9, and the sum ends in 0."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


@given(st.text(alphabet="0123456789", min_size=1, max_size=40))
def test_luhn_agrees_with_the_standard_on_any_digits(digits: str) -> None:
    from aiguard.classify.detectors import luhn_valid

    assert luhn_valid(digits) is _luhn_by_the_book(digits)


@pytest.mark.parametrize(
    "text", ["", "4111 1111", "41111111111111\uff11", "\u0664\u0661\u0661\u0661"]
)
def test_luhn_is_false_for_anything_but_ascii_digits(text: str) -> None:
    from aiguard.classify.detectors import luhn_valid

    assert luhn_valid(text) is False
