# ruff: noqa: RUF001
"""The context matrix: every built-in kind, in its written forms, in many surroundings.

Used by tests/test_detect_context.py (hypothesis drives the ``random.Random`` given to
each function, so a failure shrinks and replays) and by benchmarks/detect.py (a seeded
corpus for per-kind precision and recall).

Values are generated valid from their definition (check digits computed with
python-stdnum, phone numbers kept only when ``phonenumbers`` accepts them), not from
the engine's patterns. Surroundings are written from the shapes text takes in chat,
code and documents (brackets, quotes, key=value, JSON, Markdown, CSV, line breaks) and
from random Unicode punctuation drawn from the Unicode categories, so the engine's
own separator lists do not decide what the matrix tries.
"""

from __future__ import annotations

import json
import random
import string
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import phonenumbers
from stdnum import iban as _iban
from stdnum import luhn, verhoeff
from stdnum.au import tfn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.de import idnr, stnr
from stdnum.es import dni
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.iso7064 import mod_11_10
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.us import rtn

__all__ = [
    "KINDS",
    "LOOKALIKES",
    "Case",
    "Piece",
    "lookalike_case",
    "value_case",
]


@dataclass(frozen=True)
class Piece:
    """A value as written: an optional label the kind needs, and the value itself."""

    kind: str
    label: str
    value: str
    #: What the value needs after it (the host after a URL's user:password).
    suffix: str = ""


@dataclass
class Case:
    text: str
    #: (start, end, kind) of every value written into ``text``
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    #: (start, end, name) of every look-alike written into ``text``
    lookalikes: list[tuple[int, int, str]] = field(default_factory=list)


R = random.Random
Gen = Callable[[R], Piece]


def _d(r: R, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def _a(r: R, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def _up(r: R, n: int) -> str:
    return _a(r, n, string.ascii_uppercase)


def _label(r: R, optional: bool, *labels: str) -> str:
    if optional and r.random() < 0.4:
        return ""
    return r.choice(labels)


def _email(r: R) -> Piece:
    local = _a(r, r.randint(1, 10), string.ascii_lowercase + string.digits)
    for _ in range(r.randint(0, 2)):
        local += r.choice("._+-") + _a(r, r.randint(1, 6), string.ascii_lowercase + string.digits)
    labels = [_a(r, r.randint(2, 10), string.ascii_lowercase) for _ in range(r.randint(1, 2))]
    domain = ".".join(labels) + "." + r.choice(["com", "org", "de", "fr", "io", "co.uk", "info"])
    value = local + "@" + domain
    if r.random() < 0.15:
        value = value.capitalize()
    if r.random() < 0.1:
        value = local + "@" + r.choice(["bücher.de", "münchen.example", "xn--mnchen-3ya.de"])
    elif r.random() < 0.1:
        # Accents written decomposed (NFD, as macOS file names and some forms send
        # them): in the local part, the domain or both; found whole, every mark inside.
        accented_local = r.choice(["josé.núñez", "zoë", "françois-müller"])
        accented_domain = r.choice(["café-münchen.de", "bücher.de", "example.com"])
        part = r.choice(["local", "domain", "both"])
        if part != "domain":
            accented_local = unicodedata.normalize("NFD", accented_local)
        if part != "local":
            accented_domain = unicodedata.normalize("NFD", accented_domain)
        value = accented_local + "@" + accented_domain
    return Piece(
        "email", _label(r, True, "email: ", "mailto:", "write to ", "e-mail ", "users/"), value
    )


_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN")


def _phone(r: R) -> Piece:
    region = r.choice(_PHONE_REGIONS)
    base = phonenumbers.example_number(region)
    assert base is not None
    national = str(base.national_number)
    for _ in range(200):
        keep = max(3, len(national) - 4)
        candidate = national[:keep] + _d(r, len(national) - keep)
        number = phonenumbers.parse(("0" if region == "IT" else "") + candidate, region)
        if phonenumbers.is_valid_number(number):
            break
    else:  # pragma: no cover - the example number itself is valid
        number = base
    fmt = r.choice(
        [
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.NATIONAL,
            phonenumbers.PhoneNumberFormat.E164,
        ]
    )
    value = phonenumbers.format_number(number, fmt)
    if region == "FR" and fmt == phonenumbers.PhoneNumberFormat.NATIONAL and r.random() < 0.5:
        value = value.replace(" ", ".")  # 01.42.68.53.00
    if region == "DE" and fmt == phonenumbers.PhoneNumberFormat.NATIONAL and r.random() < 0.5:
        value = value.replace(" ", "/", 1)  # 030/901820
    needs = value.replace(" ", "").isdigit()  # a bare run of digits needs a phone word
    return Piece(
        "phone", _label(r, not needs, "call ", "phone: ", "tel. ", "Tel ", "mobile "), value
    )


def _luhn_complete(body: str) -> str:
    return body + luhn.calc_check_digit(body)


def _card(r: R) -> Piece:
    prefix, length = r.choice(
        [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
    )
    number = _luhn_complete(prefix + _d(r, length - len(prefix) - 1))
    sep = r.choice(["", "", " ", "-", ".", "_", "/", "\t"])
    if sep and length == 16:
        number = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    elif sep and length == 15:
        number = sep.join((number[:4], number[4:10], number[10:]))
    return Piece(
        "credit_card", _label(r, True, "card ", "card number: ", "Visa ", "pay with "), number
    )


# BBAN structures (n digits, a upper letters, c alphanumerics) of a few countries.
_BBAN = {
    "DE": "18n",
    "AT": "16n",
    "BE": "12n",
    "ES": "20n",
    "FR": "10n11c2n",
    "GB": "4a14n",
    "NL": "4a10n",
    "IT": "1a10n12c",
    "CH": "5n12c",
    "PL": "24n",
}


def _bban(r: R, struct: str) -> str:
    out = []
    number = ""
    for ch in struct:
        if ch.isdigit():
            number += ch
            continue
        n = int(number)
        number = ""
        alphabet = {"n": string.digits, "a": string.ascii_uppercase}.get(
            ch, string.ascii_uppercase + string.digits
        )
        out.append(_a(r, n, alphabet))
    return "".join(out)


def _iban_value(r: R) -> str:
    country = r.choice(sorted(_BBAN))
    bban = _bban(r, _BBAN[country])
    check = _iban.calc_check_digits(country + "00" + bban)
    return country + check + bban


def _iban_piece(r: R) -> Piece:
    value = _iban_value(r)
    if r.random() < 0.5:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return Piece("iban", _label(r, True, "IBAN ", "my IBAN is ", "account ", "pay to "), value)


def _aba(r: R) -> Piece:
    while True:
        body = r.choice(["0", "1", "2", "3"]) + _d(r, 7)
        value = body + rtn.calc_check_digit(body)
        prefix = int(value[:2])
        if prefix <= 12 or 21 <= prefix <= 32:
            return Piece("aba_routing", r.choice(["routing number ", "ABA ", "routing: "]), value)


_ISO = ("DE", "FR", "GB", "US", "NL", "ES", "IT", "CH", "BE", "AT")


def _bic(r: R) -> Piece:
    value = _up(r, 4) + r.choice(_ISO) + _a(r, 2, string.ascii_uppercase + string.digits)
    if r.random() < 0.5:
        value += _a(r, 3, string.ascii_uppercase + string.digits)
    return Piece("swift_bic", r.choice(["BIC ", "SWIFT: ", "SWIFT code ", "bic: "]), value)


def _ssn_digits(r: R) -> str:
    while True:
        area = r.randint(1, 899)
        if area != 666:
            return f"{area:03d}{r.randint(1, 99):02d}{r.randint(1, 9999):04d}"


def _grouped(r: R, digits: str, cuts: tuple[int, ...], seps: str) -> str:
    sep = r.choice(seps)
    parts = []
    last = 0
    for cut in cuts:
        parts.append(digits[last:cut])
        last = cut
    parts.append(digits[last:])
    return sep.join(parts)


def _ssn(r: R) -> Piece:
    digits = _ssn_digits(r)
    if r.random() < 0.3:
        return Piece("us_ssn", r.choice(["SSN ", "ssn: ", "social security number "]), digits)
    value = _grouped(r, digits, (3, 5), "-- .")
    return Piece("us_ssn", _label(r, True, "SSN ", "my social security number is "), value)


def _itin(r: R) -> Piece:
    group = r.choice([*range(70, 89), *range(90, 93), *range(94, 100)])
    digits = f"9{_d(r, 2)}{group:02d}{_d(r, 4)}"
    return Piece(
        "us_itin", _label(r, True, "ITIN ", "my ITIN is "), _grouped(r, digits, (3, 5), "- ")
    )


def _nino(r: R) -> Piece:
    while True:
        prefix = r.choice("ABCEGHJKLMNOPRSTWXYZ") + r.choice("ABCEGHJKLMNPRSTWXYZ")
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    d = _d(r, 6)
    suffix = r.choice("ABCD")
    value = (
        f"{prefix}{d}{suffix}"
        if r.random() < 0.5
        else f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {suffix}"
    )
    return Piece("uk_nino", _label(r, True, "NI number ", "NINO: "), value)


def _nhs(r: R) -> Piece:
    while True:
        body = str(r.randint(4, 7)) + _d(r, 8)
        valid = [body + c for c in string.digits if nhs.is_valid(body + c)]
        if valid:
            break
    value = valid[0] if r.random() < 0.4 else _grouped(r, valid[0], (3, 6), " -")
    return Piece(
        "uk_nhs", r.choice(["NHS number ", "NHS no: ", "NHS ", "my NHS number is "]), value
    )


def _passport(r: R) -> Piece:
    value = r.choice(
        [
            _d(r, 9),  # US, UK
            r.choice("CFGHJK") + _a(r, 8, "CFGHJKLMNPRTVWXYZ0123456789"),  # DE
            _d(r, 2) + _up(r, 2) + _d(r, 5),  # FR
            _up(r, 1) + _d(r, 7),  # IN, AU
            _up(r, 2) + _d(r, 6),  # CA
        ]
    )
    if sum(c.isdigit() for c in value) < 2:
        value = value[:-2] + _d(r, 2)
    label = r.choice(
        ["passport ", "Passport number: ", "passport no. ", "my passport number is ", "Reisepass "]
    )
    return Piece("passport", label, value)


def _driver_license(r: R) -> Piece:
    value = r.choice(
        [
            _up(r, 1) + _d(r, 7),  # California
            _d(r, 9),  # New York
            _up(r, 1) + _d(r, 12),  # Florida, Illinois
            f"{_up(r, 1)}{_d(r, 3)}-{_d(r, 4)}-{_d(r, 4)}",
            _up(r, 1) + _d(r, 3) + _up(r, 3) + _d(r, 3) + _up(r, 1),  # Germany
        ]
    )
    label = r.choice(
        [
            "driver's license ",
            "Driver License No: ",
            "driving licence number ",
            "DL# ",
            "my drivers license is ",
            "Führerschein-Nr. ",
            "permis de conduire ",
        ]
    )
    if r.random() < 0.2:  # named after it: "D1234567 is my driver's license"
        after = r.choice([" is my driver's license", " ist meine Führerscheinnummer"])
        return Piece("driver_license", "", value, after)
    return Piece("driver_license", label, value)


def _medical_record(r: R) -> Piece:
    value = r.choice([_d(r, r.randint(6, 10)), f"{_d(r, 3)}-{_d(r, 3)}-{_d(r, 3)}"])
    label = r.choice(
        ["MRN ", "MRN: ", "medical record number ", "patient ID ", "Patienten-ID: ", "EHR #"]
    )
    if r.random() < 0.2:
        after = r.choice([" is the patient's MRN", " is her medical record number"])
        return Piece("medical_record_number", "", value, after)
    return Piece("medical_record_number", label, value)


def _account_number(r: R) -> Piece:
    value = r.choice([_d(r, r.randint(6, 11)), f"{_d(r, 2)}-{_d(r, 4)}-{_d(r, 3)}"])
    label = r.choice(
        [
            "account number ",
            "bank account ",
            "Acct # ",
            "Kontonummer ",
            "my account no. is ",
            "numéro de compte ",
            "número de cuenta ",
        ]
    )
    if r.random() < 0.2:
        after = r.choice([" is my account number", " es mi número de cuenta"])
        return Piece("account_number", "", value, after)
    return Piece("account_number", label, value)


def _idnr(r: R) -> Piece:
    while True:
        body = str(r.randint(1, 9)) + _d(r, 9)
        value = body + mod_11_10.calc_check_digit(body)
        if idnr.is_valid(value):
            break
    if r.random() < 0.5:
        return Piece(
            "de_tax_id", _label(r, True, "Steuer-ID ", "IdNr "),
            f"{value[:2]} {value[2:5]} {value[5:8]} {value[8:]}",
        )  # fmt: skip
    return Piece(
        "de_tax_id", r.choice(["Steuer-ID ", "IdNr: ", "Steueridentifikationsnummer "]), value
    )


def _stnr(r: R) -> Piece:
    # Regional forms have no check digit: any digits in a state's grouping are one.
    # The federal 13-digit form starts with a tax office number python-stdnum knows.
    while True:
        value = r.choice(
            [
                f"{_d(r, 3)}/{_d(r, 3)}/{_d(r, 5)}",  # Bayern, Berlin, ...
                f"{_d(r, 2)}/{_d(r, 3)}/{_d(r, 5)}",  # Hamburg, ...
                f"{_d(r, 5)}/{_d(r, 5)}",  # Baden-Württemberg
                f"{_d(r, 2)} {_d(r, 3)} {_d(r, 5)}",  # Bremen
                _d(r, 13),
            ]
        )
        if stnr.is_valid(value):
            break
    label = r.choice(["Steuernummer ", "St.-Nr. ", "Steuer-Nr.: ", "meine Steuernummer ist "])
    return Piece("de_tax_number", label, value)


def _de_vat(r: R) -> Piece:
    body = str(r.randint(1, 9)) + _d(r, 7)
    value = "DE" + body + mod_11_10.calc_check_digit(body)
    label = r.choice(["USt-IdNr. ", "VAT ID ", "UID: ", "Umsatzsteuer-ID ", "USt-ID "])
    return Piece("de_vat_id", label, value)


def _nir(r: R) -> Piece:
    while True:
        body = (
            f"{r.choice('12')}{r.randint(0, 99):02d}{r.randint(1, 12):02d}"
            f"{r.randint(1, 95):02d}{_d(r, 3)}{_d(r, 3)}"
        )
        value = body + nir.calc_check_digits(body)
        # A NIR born in 1918 or 2013 (1 80..., 2 13...) can also be a valid 15-digit JCB
        # card number (prefix 1800 or 2131, Luhn): without its label nothing can tell
        # the two apart, so such a value is not a test of either.
        if not (value[:4] in ("1800", "2131") and luhn.is_valid(value)):
            break
    if r.random() < 0.5:
        value = " ".join(
            (value[0], value[1:3], value[3:5], value[5:7], value[7:10], value[10:13], value[13:])
        )
    return Piece("fr_nir", _label(r, True, "NIR ", "numéro de sécurité sociale "), value)


def _dni(r: R) -> Piece:
    body = _d(r, 8)
    return Piece("es_dni", _label(r, True, "DNI ", "mi DNI es "), body + dni.calc_check_digit(body))


def _nie(r: R) -> Piece:
    first = r.choice("XYZ")
    body = _d(r, 7)
    value = first + body + dni.calc_check_digit(str("XYZ".index(first)) + body)
    return Piece("es_nie", _label(r, True, "NIE "), value)


def _cf(r: R) -> Piece:
    day = r.choice([r.randint(1, 28), r.randint(41, 68)])
    body = (
        f"{_up(r, 6)}{r.randint(0, 99):02d}{r.choice('ABCDEHLMPRST')}{day:02d}"
        f"{r.choice('ABCDEFGHILMZ')}{_d(r, 3)}"
    )
    value = body + codicefiscale.calc_check_digit(body)
    return Piece("it_codice_fiscale", _label(r, True, "codice fiscale ", "CF "), value)


def _bsn(r: R) -> Piece:
    while True:
        value = str(r.randint(1, 9)) + _d(r, 8)
        if bsn.is_valid(value):
            return Piece(
                "nl_bsn", r.choice(["BSN ", "mijn BSN is ", "burgerservicenummer "]), value
            )


def _aadhaar(r: R) -> Piece:
    body = str(r.randint(2, 9)) + _d(r, 10)
    value = body + verhoeff.calc_check_digit(body)
    if value == value[::-1]:
        value = body[:-1] + str((int(body[-1]) + 1) % 10)
        value += verhoeff.calc_check_digit(value)
    if r.random() < 0.5:
        return Piece(
            "in_aadhaar", _label(r, True, "Aadhaar ", "UID "), _grouped(r, value, (4, 8), " -")
        )
    return Piece("in_aadhaar", r.choice(["Aadhaar ", "aadhaar number ", "UID "]), value)


def _tfn(r: R) -> Piece:
    while True:
        value = str(r.randint(1, 9)) + _d(r, 8)
        if tfn.is_valid(value):
            break
    if r.random() < 0.5:
        value = _grouped(r, value, (3, 6), " -")
    return Piece("au_tfn", r.choice(["TFN ", "my tax file number is ", "TFN: "]), value)


def _medicare(r: R) -> Piece:
    body = str(r.randint(2, 6)) + _d(r, 7)
    check = sum(int(d) * w for d, w in zip(body, (1, 3, 7, 9, 1, 3, 7, 9), strict=True)) % 10
    value = body + str(check) + str(r.randint(1, 9))
    if r.random() < 0.5:
        value = _grouped(r, value, (4, 9), " ")
    return Piece("au_medicare", r.choice(["Medicare number ", "medicare card "]), value)


def _sin(r: R) -> Piece:
    while True:
        body = str(r.choice("1234567")) + _d(r, 7)
        value = body + luhn.calc_check_digit(body)
        if sin.is_valid(value):
            break
    if r.random() < 0.5:
        value = _grouped(r, value, (3, 6), " -")
    return Piece("ca_sin", r.choice(["SIN ", "my SIN is ", "social insurance number "]), value)


def _cpf(r: R) -> Piece:
    while True:
        value = _d(r, 11)
        if cpf.is_valid(value):
            break
    if r.random() < 0.5:
        return Piece("br_cpf", _label(r, True, "CPF ", "meu CPF é "), cpf.format(value))
    return Piece("br_cpf", r.choice(["CPF ", "meu CPF é ", "CPF: "]), value)


def _pesel(r: R) -> Piece:
    year, month, day = r.randint(1930, 2020), r.randint(1, 12), r.randint(1, 28)
    coded_month = month + (20 if year >= 2000 else 0)
    body = f"{year % 100:02d}{coded_month:02d}{day:02d}{_d(r, 4)}"
    value = body + pesel.calc_check_digit(body)
    return Piece("pl_pesel", r.choice(["PESEL ", "numer PESEL ", "PESEL: "]), value)


def _nric(r: R) -> Piece:
    first = r.choice("STFGM")
    body = _d(r, 7)
    offset = {"S": 0, "F": 0, "T": 4, "G": 4, "M": 3}[first]
    total = offset + sum(int(d) * w for d, w in zip(body, (2, 7, 6, 5, 4, 3, 2), strict=True))
    letters = {"S": "JZIHGFEDCBA", "T": "JZIHGFEDCBA", "M": "XWUTRQPNJLK"}
    value = first + body + letters.get(first, "XWUTRQPNMLK")[total % 11]
    return Piece("sg_nric", _label(r, True, "NRIC ", "FIN ", "my NRIC is "), value)


def _pan(r: R) -> Piece:
    value = _up(r, 3) + r.choice("ABCFGHLJPT") + _up(r, 1) + _d(r, 4) + _up(r, 1)
    return Piece("in_pan", _label(r, True, "PAN ", "my PAN is "), value)


def _ip(r: R) -> Piece:
    if r.random() < 0.6:
        value = ".".join(str(r.randint(1, 254)) for _ in range(4))
    else:
        groups = [f"{r.randint(1, 0xFFFF):x}" for _ in range(8)]
        compressed = r.random() < 0.5
        value = "2001:db8::" + ":".join(groups[5:]) if compressed else ":".join(groups)
    return Piece("ip_address", _label(r, True, "IP ", "from ", "server "), value)


def _mac(r: R) -> Piece:
    pairs = [f"{r.randint(0, 255):02x}" for _ in range(6)]
    value = r.choice(":-").join(pairs)
    if r.random() < 0.5:
        value = value.upper()
    return Piece("mac_address", _label(r, True, "MAC ", "device "), value)


_B62 = string.ascii_letters + string.digits


def _mixed(r: R, n: int, extra: str = "") -> str:
    # Random keys mix cases and digits; force each class once so the draw is a key.
    return (
        _a(r, n - 3, _B62 + extra)
        + r.choice(string.ascii_uppercase)
        + r.choice(string.ascii_lowercase)
        + r.choice(string.digits)
    )


def _secret_gen(kind: str, make: Callable[[R], str], *labels: str) -> Gen:
    def gen(r: R) -> Piece:
        return Piece(kind, _label(r, True, *labels) if labels else "", make(r))

    return gen


def _jwt(r: R) -> str:
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": _d(r, 6)}).encode())
    return f"{header}.{payload}.{_a(r, 43, _B62 + '_-')}"


def _pem(r: R) -> str:
    body = "\n".join(_a(r, 64, _B62 + "+/") for _ in range(3))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


def _password(r: R) -> Piece:
    value = _mixed(r, r.randint(8, 16), "!#$%&*")
    return Piece(
        "password",
        r.choice(["password=", "password: ", "pwd: ", "my password is ", "Password = "]),
        value,
    )


def _secret(r: R) -> Piece:
    value = _mixed(r, r.randint(12, 32))
    if r.random() < 0.3:
        value = _a(r, 40, "0123456789abcdef")
        return Piece("secret", "Authorization: Bearer ", value)
    return Piece(
        "secret", r.choice(["api_key=", "client_secret: ", "token = ", "API-Key: "]), value
    )


def _aws_secret(r: R) -> Piece:
    return Piece(
        "aws_secret_key",
        r.choice(["aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY="]),
        _mixed(r, 40, "/+"),
    )


def _url_credentials(r: R) -> Piece:
    user = _a(r, r.randint(3, 8), string.ascii_lowercase)
    pw = _mixed(r, r.randint(8, 14))
    host = _a(r, r.randint(3, 8), string.ascii_lowercase) + ".example.com"
    # The finding is the user:password part; the rest of the URL stays around it.
    return Piece("url_credentials", "https://", f"{user}:{pw}", f"@{host}/x")


_MONTHS = ("January", "March", "June", "September", "December", "Feb", "Oct")


def _dob(r: R) -> Piece:
    year, month, day = r.randint(1940, 2005), r.randint(1, 12), r.randint(1, 28)
    value = r.choice(
        [
            f"{year}-{month:02d}-{day:02d}",
            f"{day:02d}/{month:02d}/{year}",
            f"{day} {r.choice(_MONTHS)} {year}",
            f"{r.choice(_MONTHS)} {day}, {year}",
        ]
    )
    return Piece(
        "date_of_birth", r.choice(["date of birth: ", "born on ", "DOB ", "birthday: "]), value
    )


def _age(r: R) -> Piece:
    return Piece("age", "aged ", str(r.randint(18, 99)))


KINDS: dict[str, Gen] = {
    "email": _email,
    "phone": _phone,
    "credit_card": _card,
    "iban": _iban_piece,
    "aba_routing": _aba,
    "swift_bic": _bic,
    "us_ssn": _ssn,
    "us_itin": _itin,
    "uk_nino": _nino,
    "uk_nhs": _nhs,
    "passport": _passport,
    "driver_license": _driver_license,
    "medical_record_number": _medical_record,
    "account_number": _account_number,
    "de_tax_id": _idnr,
    "de_tax_number": _stnr,
    "de_vat_id": _de_vat,
    "fr_nir": _nir,
    "es_dni": _dni,
    "es_nie": _nie,
    "it_codice_fiscale": _cf,
    "nl_bsn": _bsn,
    "in_aadhaar": _aadhaar,
    "in_pan": _pan,
    "au_tfn": _tfn,
    "au_medicare": _medicare,
    "ca_sin": _sin,
    "br_cpf": _cpf,
    "pl_pesel": _pesel,
    "sg_nric": _nric,
    "ip_address": _ip,
    "mac_address": _mac,
    "aws_access_key": _secret_gen(
        "aws_access_key", lambda r: "AKIA" + _a(r, 16, string.ascii_uppercase + "234567")
    ),
    "aws_secret_key": _aws_secret,
    "github_token": _secret_gen(
        "github_token", lambda r: "gh" + r.choice("pousr") + "_" + _a(r, 36), "token "
    ),
    "slack_token": _secret_gen(
        "slack_token", lambda r: f"xoxb-{_d(r, 12)}-{_d(r, 12)}-{_a(r, 24)}"
    ),
    "slack_webhook": _secret_gen(
        "slack_webhook",
        lambda r: (
            f"https://hooks.slack.com/services/T{_a(r, 8, string.ascii_uppercase)}"
            f"/B{_a(r, 8, string.ascii_uppercase)}/{_a(r, 24)}"
        ),
    ),
    "openai_key": _secret_gen(
        "openai_key", lambda r: "sk-proj-" + _mixed(r, 48), "OPENAI_API_KEY=", "key: "
    ),
    "anthropic_key": _secret_gen("anthropic_key", lambda r: "sk-ant-api03-" + _mixed(r, 95)),
    "stripe_key": _secret_gen(
        "stripe_key", lambda r: r.choice(["sk_live_", "sk_test_", "rk_live_"]) + _a(r, 24)
    ),
    "google_api_key": _secret_gen("google_api_key", lambda r: "AIza" + _a(r, 35, _B62 + "_-")),
    "jwt": _secret_gen("jwt", _jwt, "Authorization: Bearer ", "token "),
    "private_key": _secret_gen("private_key", _pem),
    "password": _password,
    "secret": _secret,
    "url_credentials": _url_credentials,
    "date_of_birth": _dob,
    "age": _age,
}


# -- look-alikes: things that are not values -----------------------------------------


def _uuid(r: R) -> str:
    h = _a(r, 32, "0123456789abcdef")
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{r.choice('89ab')}{h[17:20]}-{h[20:]}"


def _bad_iban(r: R) -> str:
    value = _iban_value(r)
    check = (int(value[2:4]) + r.randint(1, 90)) % 97 + 2
    value = value[:2] + f"{check:02d}"[-2:] + value[4:]
    if _iban.is_valid(value):
        value = value[:2] + f"{(int(value[2:4]) + 1) % 97 + 2:02d}"[-2:] + value[4:]
    if r.random() < 0.5:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def _bad_card(r: R) -> str:
    while True:
        n = "4" + _d(r, 15)
        if not luhn.is_valid(n):
            return " ".join(n[i : i + 4] for i in range(0, 16, 4)) if r.random() < 0.5 else n


LOOKALIKES: dict[str, Callable[[R], str]] = {
    "order": lambda r: (
        r.choice(["order #", "Order ", "order no. ", "order number is #"]) + _d(r, r.randint(6, 12))
    ),
    "ticket": lambda r: r.choice(["ticket ", "Ticket #", "case ", "INC"]) + _d(r, r.randint(6, 10)),
    "tracking": lambda r: r.choice(
        [
            "1Z" + _a(r, 6, string.ascii_uppercase + string.digits) + _d(r, 10),
            "9400 " + " ".join(_d(r, 4) for _ in range(4)) + " " + _d(r, 2),
            "tracking " + _d(r, 12),
        ]
    ),
    "version": lambda r: (
        r.choice(["v", "version ", "release "])
        + ".".join(str(r.randint(0, 20)) for _ in range(r.choice([2, 3, 4])))
    ),
    "timestamp": lambda r: r.choice(
        [
            f"{r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
            f"T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
            f"{r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
            f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
        ]
    ),
    "hash": lambda r: _a(r, r.choice([7, 32, 40, 64]), "0123456789abcdef"),
    "uuid": _uuid,
    "amount": lambda r: (
        r.choice(["$", "€", "£", "USD ", ""])
        + f"{r.randint(1, 9_999_999):,}.{r.randint(0, 99):02d}"
        + r.choice(["", " EUR", " €"])
    ),
    "bad_iban": _bad_iban,
    "bad_card": _bad_card,
}


# -- surroundings ---------------------------------------------------------------------

# Neutral filler: common English words that name no kind (no "card", "call", "id", ...).
_WORDS = (
    "the", "a", "please", "thanks", "here", "is", "it", "we", "you", "they", "sent",
    "update", "this", "that", "today", "tomorrow", "again", "note", "see", "and", "or",
    "with", "from", "after", "before", "ok", "yes", "no", "hello", "hi", "regards",
    "kind", "best", "team", "customer", "support", "file", "record", "form", "on",
)  # fmt: skip

_ASCII_PUNCT_SAFE = ".,;:!?"


@cache
def _unicode_punctuation() -> tuple[str, ...]:
    # Non-ASCII punctuation of every category: quotes, brackets, CJK and Arabic marks.
    out = []
    for code in range(0xA1, 0x3100):
        ch = chr(code)
        if unicodedata.category(ch) in ("Ps", "Pe", "Pi", "Pf", "Po"):
            out.append(ch)
    return tuple(out)


# A full stop between a label and its value ends the label's sentence ("passport.
# 123456789" names nothing), and Unicode has full stops that fold to "." (U+2024, U+FF0E).
_NOT_SENTENCE_END = tuple(
    ch for ch in _unicode_punctuation() if unicodedata.normalize("NFKC", ch) not in (".", "!", "?")
)


_PAIRS = (
    ("(", ")"), ("[", "]"), ("{", "}"), ('"', '"'), ("'", "'"), ("«", "»"), ("“", "”"),
    ("‘", "’"), ("„", "“"), ("「", "」"), ("<", ">"), ("`", "`"), ("**", "**"), ("_", "_"),
    ("(", "),"), ("\"", "\"."), ("« ", " »"), ("【", "】"), ("（", "）"),
)  # fmt: skip


def _filler(r: R, n: int) -> str:
    return " ".join(r.choice(_WORDS) for _ in range(n))


def _wrap(r: R, label: str, value: str, kind: str, suffix: str = "") -> tuple[str, int, int]:
    """``label`` and ``value`` in one surrounding; returns the piece and the value's span."""
    if suffix:  # the value sits inside a larger token: surround the token
        pre, post = r.choice(_PAIRS) if r.random() < 0.5 else ("", r.choice(["", ".", ","]))
        return pre + label + value + suffix + post, len(pre + label), len(pre + label + value)
    style = r.randrange(13)
    pre, post = "", ""
    if style == 0:
        pass
    elif style == 1:  # brackets and quotes around the value, the label outside
        pre, post = r.choice(_PAIRS)
        if kind == "private_key" and pre in ("_", "`"):
            pre, post = "", ""
    elif style == 2:  # Unicode punctuation on either side
        marks = _unicode_punctuation()
        pre = r.choice(_NOT_SENTENCE_END if label else marks) if r.random() < 0.5 else ""
        post = r.choice(marks)
    elif style == 3:  # sentence punctuation after
        post = r.choice(_ASCII_PUNCT_SAFE + "…。、")
    elif style == 4 and kind not in ("phone",):  # after ':', '=', '#'
        pre = r.choice([": ", "=", "# ", ":"]) if label else r.choice([": ", "= "])
    elif style == 5:  # key=value / key: value
        words = [
            w
            for w in label.strip().rstrip(":=").split()
            if w not in ("my", "mi", "mijn", "is", "es")
        ]
        label = " ".join(words) or "value"
        label = label.replace(" ", "_") + r.choice(["=", ": ", " = "])
    elif style == 6:  # a JSON string holding the phrase
        doc = json.dumps({"note": label + value}, ensure_ascii=r.random() < 0.3)
        inner = json.dumps(label + value, ensure_ascii=False)[1:-1]
        if doc.find(inner) == -1 or json.dumps(value, ensure_ascii=False)[1:-1] != value:
            return label + value, len(label), len(label) + len(value)
        start = doc.index(inner) + len(label)
        return doc, start, start + len(value)
    elif style == 7:  # Markdown table row
        pre, post = (label.strip() or "value") + " | ", " |"
        label = "| "
    elif style == 8:  # CSV line
        cells = [_filler(r, 1), label + value, _filler(r, 1)]
        line = ",".join(cells)
        start = len(cells[0]) + 1 + len(label)
        return line, start, start + len(value)
    elif style == 9:  # line breaks
        pre, post = r.choice(["\n", "\r\n", ""]), r.choice(["\n", "\r\n", "\n\n"])
    elif style == 10:  # Markdown list item / quote / inline code
        label = r.choice(["- ", "> ", "* ", "1. "]) + label
    elif style == 11:  # trailing word glued by a space
        post = " " + r.choice(_WORDS)
    elif style == 12:  # HTML-ish
        pre, post = "<td>", "</td>"
    text = label + pre + value + post
    start = len(label) + len(pre)
    return text, start, start + len(value)


def value_case(r: R, kinds: list[str] | None = None, count: int | None = None) -> Case:
    """A text with one to three values of random kinds, each in a random surrounding."""
    names = kinds or sorted(KINDS)
    n = count if count is not None else r.choice([1, 1, 1, 2, 3])
    case = Case("")
    parts: list[str] = []
    length = 0

    def add(s: str) -> None:
        nonlocal length
        parts.append(s)
        length += len(s)

    if r.random() < 0.6:
        add(_filler(r, r.randint(1, 6)) + " ")
    for i in range(n):
        piece = KINDS[r.choice(names)](r)
        text, s, e = _wrap(r, piece.label, piece.value, piece.kind, piece.suffix)
        case.spans.append((length + s, length + e, piece.kind))
        add(text)
        if i < n - 1:
            add(
                r.choice([" ", ", ", " and ", "; ", "\n", " / ", " | "])
                + _filler(r, r.randint(0, 3))
                + " "
            )
    if r.random() < 0.6:
        add(" " + _filler(r, r.randint(1, 6)))
    case.text = "".join(parts)
    return case


def lookalike_case(r: R) -> Case:
    """A text with one or two look-alikes in the same surroundings, and no value."""
    case = Case("")
    parts: list[str] = []
    length = 0

    def add(s: str) -> None:
        nonlocal length
        parts.append(s)
        length += len(s)

    if r.random() < 0.6:
        add(_filler(r, r.randint(1, 6)) + " ")
    for i in range(r.choice([1, 1, 2])):
        if i:
            add(" " + _filler(r, r.randint(1, 3)) + " ")
        name = r.choice(sorted(LOOKALIKES))
        text, s, e = _wrap(r, "", LOOKALIKES[name](r), "lookalike")
        case.lookalikes.append((length + s, length + e, name))
        add(text)
    if r.random() < 0.6:
        add(" " + _filler(r, r.randint(1, 6)))
    case.text = "".join(parts)
    return case


if __name__ == "__main__":  # a few samples, to read
    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    for _ in range(20):
        c = value_case(rng)
        print(repr(c.text), [(c.text[s:e], k) for s, e, k in c.spans])


_SENTENCE_MARKS = frozenset("!?")


def _folded_marks(text: str) -> bool:
    """Non-empty, and every character a non-ASCII punctuation mark that NFKC folds to
    ASCII punctuation."""
    return bool(text) and all(
        ch > "\x7f"
        and unicodedata.category(ch).startswith("P")
        and all(c.isascii() and not c.isalnum() for c in unicodedata.normalize("NFKC", ch))
        for ch in text
    )


def matches(case: Case, found: list) -> tuple[list[tuple[int, int, str]], list]:  # type: ignore[type-arg]
    """The values not found exactly, and the findings that are not a written value.

    A password or secret may take a closing "!" or "?" with it: whether it belongs to
    the value is unknowable, and taking it leaks nothing. So may it take a leading
    Unicode punctuation mark that folds to ASCII punctuation (U+2024, the one-dot
    leader, folds to "."): after folding it reads as the value's first
    character.
    """
    missing = []
    used = set()
    for s, e, kind in case.spans:
        hit = None
        for i, f in enumerate(found):
            if f.kind != kind or not (
                f.start == s
                or (kind in ("password", "secret") and _folded_marks(case.text[f.start : s]))
            ):
                continue
            tail = case.text[e : f.end]
            if f.end == e or (
                kind in ("password", "secret") and f.end > e and set(tail) <= _SENTENCE_MARKS
            ):
                hit = i
                break
        if hit is None:
            missing.append((s, e, kind))
        else:
            used.add(hit)
    extra = [f for i, f in enumerate(found) if i not in used]
    return missing, extra
