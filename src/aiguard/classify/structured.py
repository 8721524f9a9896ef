"""Find personal data in JSON-like payloads: dicts, lists and pydantic models.

Three sources decide, strongest first: a pydantic ``Classified`` tag on the field; the
key's name (``email``, ``ssn``, ``dob``, ``iban``, ...), which classifies the whole
value; and detection inside string values. Every finding carries the JSON path of the
value it is in. Nesting deeper than ``max_depth`` raises instead of skipping the rest,
so a payload built to exhaust the walker is not sent unscanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ._finding import Detector
from .detectors import builtin_detector, merge_findings
from .kinds import DEFAULT_LEVELS
from .levels import Level, classified_values

__all__ = ["KEY_KINDS", "DepthLimitExceeded", "JsonFinding", "detect_json", "value_label"]


class DepthLimitExceeded(ValueError):
    """The payload nests deeper than the walker's limit (it fails closed)."""


@dataclass(frozen=True, slots=True)
class JsonFinding:
    """A finding in one string (or scalar) of a payload.

    ``path`` is dotted with ``[i]`` for list items (``messages[0].content``); ``start``
    and ``end`` index ``str(value)``; ``source`` says what decided: ``"tag"``,
    ``"key"`` or ``"value"``.
    """

    path: str
    start: int
    end: int
    kind: str
    level: Level
    score: float
    detector: str
    source: str


#: Key names (lower-cased, without separators) that classify a whole value.
KEY_KINDS: dict[str, str] = {
    "email": "email",
    "emailaddress": "email",
    "mail": "email",
    "phone": "phone",
    "phonenumber": "phone",
    "mobile": "phone",
    "telephone": "phone",
    "tel": "phone",
    "ssn": "us_ssn",
    "socialsecuritynumber": "us_ssn",
    "dob": "date_of_birth",
    "dateofbirth": "date_of_birth",
    "birthdate": "date_of_birth",
    "birthday": "date_of_birth",
    "iban": "iban",
    "cardnumber": "credit_card",
    "creditcard": "credit_card",
    "ccnumber": "credit_card",
    "password": "password",
    "passwd": "password",
    "secret": "secret",
    "apikey": "secret",
    "accesstoken": "secret",
    "clientsecret": "secret",
    "ipaddress": "ip_address",
    "ip": "ip_address",
    "macaddress": "mac_address",
    "nino": "uk_nino",
    "nhsnumber": "uk_nhs",
    "passport": "passport",
    "passportnumber": "passport",
    "passportno": "passport",
    "driverslicense": "driver_license",
    "driverlicense": "driver_license",
    "driverslicence": "driver_license",
    "drivinglicence": "driver_license",
    "driverslicensenumber": "driver_license",
    "driverlicensenumber": "driver_license",
    "dlnumber": "driver_license",
    "mrn": "medical_record_number",
    "medicalrecordnumber": "medical_record_number",
    "medicalrecordno": "medical_record_number",
    "accountnumber": "account_number",
    "accountno": "account_number",
    "acctno": "account_number",
    "acctnumber": "account_number",
    "bankaccount": "account_number",
    "bankaccountnumber": "account_number",
    "bsn": "nl_bsn",
    "aadhaar": "in_aadhaar",
    "codicefiscale": "it_codice_fiscale",
    "tfn": "au_tfn",
    "taxfilenumber": "au_tfn",
    "medicarenumber": "au_medicare",
    "sinnumber": "ca_sin",
    "socialinsurancenumber": "ca_sin",
    "cpf": "br_cpf",
    "pesel": "pl_pesel",
    "nric": "sg_nric",
    "age": "age",
    "fax": "phone",
}
_KEY_NORMAL = re.compile(r"[^a-z0-9]")

#: Keys whose value names what the object's ``value`` holds: name/value pairs ("custom
#: fields", form data), FHIR's ContactPoint (``system``) and Identifier (``type``).
_NAMING_KEYS = ("type", "system", "name", "field", "label", "key", "kind")
#: FHIR identifier type codes (HL7 v2 table 0203) of the kinds aiguard knows.
_IDENTIFIER_TYPE_CODES = {
    "DL": "driverslicense",
    "MR": "medicalrecordnumber",
    "SS": "socialsecuritynumber",
    "SB": "socialsecuritynumber",
    "PPN": "passportnumber",
    "AN": "accountnumber",
    "BA": "bankaccountnumber",
}


def _key_kind(key: str) -> str | None:
    return KEY_KINDS.get(_KEY_NORMAL.sub("", key.lower()))


def value_label(node: Mapping[Any, Any]) -> str | None:
    """What a sibling says the object's ``value`` is, as a key naming a kind; or None.

    ``{"name": "ssn", "value": "536228726"}`` and ``{"system": "phone", "value": "…"}``
    read as ``{"ssn": "536228726"}``; a FHIR identifier names its kind in
    ``type.text``, ``type.coding[].display`` or an HL7 v2-0203 ``type.coding[].code``
    (``{"type": {"text": "Driver's License"}, "value": "S99966334"}``).
    """
    for naming in _NAMING_KEYS:
        label = node.get(naming)
        if isinstance(label, str):
            if _key_kind(label) is not None:
                return label
        elif isinstance(label, Mapping):
            text = label.get("text")
            if isinstance(text, str) and _key_kind(text) is not None:
                return text
            codings = label.get("coding")
            for coding in codings if isinstance(codings, list) else ():
                if not isinstance(coding, Mapping):
                    continue
                display, code = coding.get("display"), coding.get("code")
                if isinstance(display, str) and _key_kind(display) is not None:
                    return display
                if isinstance(code, str) and code in _IDENTIFIER_TYPE_CODES:
                    return _IDENTIFIER_TYPE_CODES[code]
    return None


def detect_json(
    obj: Any,
    *,
    kinds: Iterable[str] | None = None,
    locales: Iterable[str] | None = None,
    detectors: Iterable[Detector] | None = None,
    levels: Mapping[str, Level] | None = None,
    max_depth: int = 64,
) -> list[JsonFinding]:
    """Walk ``obj`` (parsed JSON, dicts, lists, tuples, pydantic models) and report findings.

    >>> [f.kind for f in detect_json({"user": {"email": "a@b.co", "note": "call +1 415 555 0132"}})]
    ['email', 'phone']
    """
    active = (
        tuple(detectors)
        if detectors is not None
        else (builtin_detector(kinds=kinds, locales=locales),)
    )
    wanted = frozenset(kinds) if kinds is not None else None
    level_of = dict(DEFAULT_LEVELS)
    level_of.update(levels or {})
    out: list[JsonFinding] = []
    tagged: set[str] = set()
    if isinstance(obj, BaseModel):
        for path, value, tag in classified_values(obj):
            if value is None or isinstance(value, (dict, list, BaseModel)):
                continue
            text = str(value)
            tagged.add(path)
            out.append(JsonFinding(path, 0, len(text), tag.kind, tag.level, 1.0, "tag", "tag"))
        obj = obj.model_dump(mode="json")

    def walk(node: Any, path: str, depth: int, key_kind: str | None) -> None:
        if depth > max_depth:
            raise DepthLimitExceeded(
                f"payload nests deeper than {max_depth} levels at {path or '<root>'}; "
                "raise max_depth if this is expected"
            )
        if isinstance(node, Mapping):
            label = value_label(node) if "value" in node else None
            for key, value in node.items():
                child = f"{path}.{key}" if path else str(key)
                named = label if key == "value" and label is not None else str(key)
                walk(value, child, depth + 1, _key_kind(named))
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]", depth + 1, key_kind)
        elif isinstance(node, BaseModel):
            walk(node.model_dump(mode="json"), path, depth, key_kind)
        elif node is None or isinstance(node, bool) or path in tagged:
            return
        elif isinstance(node, (str, int, float)):
            text = node if isinstance(node, str) else str(node)
            if not text:
                return
            if key_kind is not None and (wanted is None or key_kind in wanted):
                level = level_of.get(key_kind, Level.SENSITIVE)
                out.append(JsonFinding(path, 0, len(text), key_kind, level, 0.9, "key", "key"))
                return
            if not isinstance(node, str):
                return
            found = []
            for detector in active:
                found.extend(detector.detect(text))
            for f in merge_findings(found):
                if wanted is None or f.kind in wanted:
                    out.append(
                        JsonFinding(
                            path, f.start, f.end, f.kind, f.level, f.score, f.detector, "value"
                        )
                    )

    walk(obj, "", 0, None)
    return out
