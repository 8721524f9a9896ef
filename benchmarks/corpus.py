# ruff: noqa: E501
"""Seeded, labelled corpus of chat-shaped texts for benchmarks/detect.py.

Each text is 100 to 1,500 characters of Faker prose with values of every kind and
distractors (things that look like values and are not) spliced in between sentences,
sometimes after a label ("my IBAN is ...") and sometimes bare. Values are generated
valid (checksums computed with python-stdnum, phone numbers kept only when
``phonenumbers`` accepts them, formatted in its international or national format);
distractors are the shapes other detectors flag by mistake: order and invoice numbers,
tracking ids, UUIDs, versions, timestamps, prices, numbers that fail their checksum,
code identifiers and hex hashes.

    python benchmarks/corpus.py --density dense --texts 2000 --out dense.jsonl
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers
from faker import Faker
from stdnum import iban as stdnum_iban
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


@dataclass
class Text:
    text: str
    #: (start, end, kind) of every value
    labels: list[tuple[int, int, str]] = field(default_factory=list)
    #: (start, end, type) of every distractor
    distractors: list[tuple[int, int, str]] = field(default_factory=list)


Gen = Callable[[random.Random, Faker], tuple[str, str]]  # (label prefix, value)


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def _alnum(r: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def _pick(r: random.Random, *labels: str) -> str:
    return r.choice(labels)


def email(r: random.Random, f: Faker) -> tuple[str, str]:
    value = (
        f.email()
        if r.random() < 0.85
        else f"{f.user_name()}@{r.choice(['bücher.de', 'münchen.example', 'xn--mnchen-3ya.de'])}"
    )
    return _pick(r, "email me at ", "my email is ", "", "contact: "), value


_PHONE_LOCALES = [("en_US", "US"), ("en_GB", "GB"), ("de_DE", "DE"), ("fr_FR", "FR"),
                  ("es_ES", "ES"), ("it_IT", "IT"), ("nl_NL", "NL"), ("en_IN", "IN")]  # fmt: skip
_FAKERS: dict[str, Faker] = {}


def phone(r: random.Random, f: Faker) -> tuple[str, str]:
    loc, region = r.choice(_PHONE_LOCALES)
    fk = _FAKERS.setdefault(loc, Faker(loc))
    fk.seed_instance(r.getrandbits(32))
    for _ in range(50):
        raw = fk.phone_number().split("x")[0].strip()
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            fmt = r.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                            phonenumbers.PhoneNumberFormat.NATIONAL,
                            phonenumbers.PhoneNumberFormat.E164])  # fmt: skip
            return _pick(r, "call me at ", "my number is ", "phone: ", "reach me on ", ""), (
                phonenumbers.format_number(number, fmt)
            )
    return "call ", "+1 415-555-0132"


def credit_card(r: random.Random, f: Faker) -> tuple[str, str]:
    number = f.credit_card_number()
    style = r.random()
    if style < 0.4 and len(number) == 16:
        sep = r.choice([" ", "-"])
        number = sep.join(number[i : i + 4] for i in range(0, 16, 4))
    if len(number) == 12:
        # A 12-digit Maestro number is a card only next to a card word (docs/kinds.md):
        # bare, it is any twelve digits that pass Luhn.
        return _pick(r, "card ", "my card number is ", "pay with "), number
    return _pick(r, "card ", "my card number is ", "", "pay with "), number


def iban(r: random.Random, f: Faker) -> tuple[str, str]:
    value = (
        Faker(r.choice(["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT"])).iban()
        if False
        else f.iban()
    )
    if r.random() < 0.5:
        value = stdnum_iban.format(value)
    return _pick(r, "IBAN ", "send it to ", "account: ", ""), value


def aba(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "routing number ", "ABA ", "routing: "), f.aba()


def swift(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "BIC ", "SWIFT: ", "SWIFT code "), f.swift(length=r.choice([8, 11]))


def us_ssn(r: random.Random, f: Faker) -> tuple[str, str]:
    value = f.ssn()
    if r.random() < 0.2:
        value = value.replace("-", " ")
    return _pick(r, "SSN ", "my social security number is ", "", "ssn: "), value


def us_itin(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "ITIN ", "my ITIN is ", ""), f.itin()


def uk_nino(r: random.Random, f: Faker) -> tuple[str, str]:
    first = r.choice("ABCEGHJKLMNOPRSTWXYZ")
    second = r.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
        second = r.choice("ABCEGHJKLMNPRSTWXYZ")
    d = _digits(r, 6)
    suffix = r.choice("ABCD")
    value = (
        f"{first}{second}{d}{suffix}"
        if r.random() < 0.6
        else f"{first}{second} {d[:2]} {d[2:4]} {d[4:]} {suffix}"
    )
    return _pick(r, "NI number ", "my national insurance number is ", ""), value


def de_tax_id(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        body = str(r.randint(1, 9)) + _digits(r, 9)
        value = body + mod_11_10.calc_check_digit(body)
        if idnr.is_valid(value):
            break
    if r.random() < 0.4:
        value = f"{value[:2]} {value[2:5]} {value[5:8]} {value[8:]}"
    return _pick(r, "Steuer-ID ", "meine Steuer-ID: ", "IdNr "), value


def de_tax_number(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        value = r.choice(
            [
                f"{_digits(r, 3)}/{_digits(r, 3)}/{_digits(r, 5)}",
                f"{_digits(r, 5)}/{_digits(r, 5)}",
                _digits(r, 13),
            ]
        )
        if stnr.is_valid(value):
            break
    return _pick(r, "Steuernummer ", "St.-Nr. ", "meine Steuernummer: "), value


def de_vat_id(r: random.Random, f: Faker) -> tuple[str, str]:
    body = str(r.randint(1, 9)) + _digits(r, 7)
    return _pick(r, "USt-IdNr. ", "VAT ID ", "UID: "), "DE" + body + mod_11_10.calc_check_digit(
        body
    )


def fr_nir(r: random.Random, f: Faker) -> tuple[str, str]:
    body = f"{r.choice('12')}{r.randint(0, 99):02d}{r.randint(1, 12):02d}{r.randint(1, 95):02d}{_digits(r, 3)}{_digits(r, 3)}"
    value = body + nir.calc_check_digits(body)
    if r.random() < 0.5:
        value = f"{value[0]} {value[1:3]} {value[3:5]} {value[5:7]} {value[7:10]} {value[10:13]} {value[13:]}"
    return _pick(r, "NIR ", "numéro de sécurité sociale ", ""), value


def es_dni(r: random.Random, f: Faker) -> tuple[str, str]:
    body = _digits(r, 8)
    return _pick(r, "DNI ", "mi DNI es ", ""), body + dni.calc_check_digit(body)


def es_nie(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "NIE ", ""), Faker("es_ES").nie() if False else _nie(r)


def _nie(r: random.Random) -> str:
    first = r.choice("XYZ")
    body = _digits(r, 7)
    return first + body + dni.calc_check_digit(str("XYZ".index(first)) + body)


def it_codice_fiscale(r: random.Random, f: Faker) -> tuple[str, str]:
    letters = "".join(r.choice(string.ascii_uppercase) for _ in range(6))
    body = f"{letters}{r.randint(0, 99):02d}{r.choice('ABCDEHLMPRST')}{r.choice([r.randint(1, 28), r.randint(41, 68)]):02d}{r.choice('ABCDEFGHILMZ')}{_digits(r, 3)}"
    return _pick(r, "codice fiscale ", "CF ", ""), body + codicefiscale.calc_check_digit(body)


def nl_bsn(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        value = str(r.randint(1, 9)) + _digits(r, 8)
        if bsn.is_valid(value):
            return _pick(r, "BSN ", "mijn BSN is ", "burgerservicenummer "), value


def in_aadhaar(r: random.Random, f: Faker) -> tuple[str, str]:
    body = str(r.randint(2, 9)) + _digits(r, 10)
    value = body + verhoeff.calc_check_digit(body)
    if r.random() < 0.6:
        value = f"{value[:4]} {value[4:8]} {value[8:]}"
    return _pick(r, "Aadhaar ", "my aadhaar number is ", "UID "), value


def in_pan(r: random.Random, f: Faker) -> tuple[str, str]:
    value = (
        "".join(r.choice(string.ascii_uppercase) for _ in range(3))
        + r.choice("ABCFGHLJPT")
        + r.choice(string.ascii_uppercase)
        + _digits(r, 4)
        + r.choice(string.ascii_uppercase)
    )
    return _pick(r, "PAN ", "my PAN is ", ""), value


def ip_address(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "from ", "server ", "IP ", ""), f.ipv4() if r.random() < 0.7 else f.ipv6()


def mac_address(r: random.Random, f: Faker) -> tuple[str, str]:
    value = f.mac_address()
    if r.random() < 0.3:
        value = value.upper().replace(":", "-")
    return _pick(r, "MAC ", "device ", ""), value


_B62 = string.ascii_letters + string.digits


def aws_access_key(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "key ", "AWS_ACCESS_KEY_ID=", ""), "AKIA" + _alnum(
        r, 16, string.ascii_uppercase + "234567"
    )


def aws_secret_key(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY="), _alnum(
        r, 40, _B62 + "/+"
    )


def github_token(r: random.Random, f: Faker) -> tuple[str, str]:
    if r.random() < 0.7:
        return _pick(r, "token ", ""), r.choice("pousr").join(("gh", "_")) + _alnum(r, 36)
    return "", "github_pat_" + _alnum(r, 22) + "_" + _alnum(r, 59)


def slack_token(r: random.Random, f: Faker) -> tuple[str, str]:
    return "", f"xox{r.choice('bpa')}-{_digits(r, 12)}-{_digits(r, 12)}-{_alnum(r, 24)}"


def slack_webhook(r: random.Random, f: Faker) -> tuple[str, str]:
    return (
        "post to ",
        f"https://hooks.slack.com/services/T{_alnum(r, 8, string.ascii_uppercase + string.digits)}/B{_alnum(r, 8, string.ascii_uppercase + string.digits)}/{_alnum(r, 24)}",
    )


def openai_key(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "OPENAI_API_KEY=", "key: ", ""), "sk-proj-" + _alnum(r, 48, _B62 + "_-") + "A1a"


def anthropic_key(r: random.Random, f: Faker) -> tuple[str, str]:
    return "", "sk-ant-api03-" + _alnum(r, 93, _B62 + "_-") + "AA"


def stripe_key(r: random.Random, f: Faker) -> tuple[str, str]:
    return "", r.choice(["sk_live_", "sk_test_", "rk_live_"]) + _alnum(r, 24)


def google_api_key(r: random.Random, f: Faker) -> tuple[str, str]:
    return "", "AIza" + _alnum(r, 35, _B62 + "_-")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(r: random.Random, f: Faker) -> tuple[str, str]:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": str(r.randint(1, 10**6)), "name": f.name()}).encode())
    return _pick(
        r, "Authorization: Bearer ", "token ", ""
    ), f"{header}.{payload}.{_alnum(r, 43, _B62 + '_-')}"


def private_key(r: random.Random, f: Faker) -> tuple[str, str]:
    body = "\n".join(_alnum(r, 64, _B62 + "+/") for _ in range(4))
    return "", f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


def password(r: random.Random, f: Faker) -> tuple[str, str]:
    return _pick(r, "password=", "password: ", "pwd: "), f.password(length=r.randint(8, 16))


def url_credentials(r: random.Random, f: Faker) -> tuple[str, str]:
    return (
        "",
        f"https://{f.user_name()}:{f.password(length=12, special_chars=False)}@{f.domain_name()}/v1",
    )


def date_of_birth(r: random.Random, f: Faker) -> tuple[str, str]:
    d = f.date_of_birth(minimum_age=18, maximum_age=90)
    value = r.choice(
        [d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%B %d, %Y"), d.strftime("%d %B %Y")]
    )
    return _pick(r, "date of birth: ", "born on ", "DOB ", "my birthday is "), value


def uk_nhs(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        body = str(r.randint(4, 7)) + _digits(r, 8)
        valid = [body + c for c in string.digits if nhs.is_valid(body + c)]
        if valid:
            break
    value = valid[0] if r.random() < 0.4 else f"{valid[0][:3]} {valid[0][3:6]} {valid[0][6:]}"
    return _pick(r, "NHS number ", "my NHS number is ", "NHS no: "), value


def passport(r: random.Random, f: Faker) -> tuple[str, str]:
    value = r.choice(
        [
            _digits(r, 9),
            r.choice("CFGHJK") + _alnum(r, 6, "CFGHJKLMNPRTVWXYZ") + _digits(r, 2),
            _digits(r, 2) + _alnum(r, 2, string.ascii_uppercase) + _digits(r, 5),
            r.choice(string.ascii_uppercase) + _digits(r, 7),
        ]
    )
    return _pick(r, "passport ", "Passport number: ", "my passport no. is "), value


def driver_license(r: random.Random, f: Faker) -> tuple[str, str]:
    value = r.choice(
        [
            r.choice(string.ascii_uppercase) + _digits(r, 7),  # California
            _digits(r, 9),  # New York
            r.choice(string.ascii_uppercase) + _digits(r, 12),  # Florida, Illinois
            f"{r.choice(string.ascii_uppercase)}{_digits(r, 3)}-{_digits(r, 4)}-{_digits(r, 4)}",
        ]
    )
    label = _pick(r, "driver's license ", "Driver License No: ", "driving licence number ", "DL# ")
    return label, value


def medical_record_number(r: random.Random, f: Faker) -> tuple[str, str]:
    value = r.choice(
        [_digits(r, r.randint(6, 10)), f"{_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 3)}"]
    )
    return _pick(r, "MRN ", "MRN: ", "medical record number ", "patient ID "), value


def account_number(r: random.Random, f: Faker) -> tuple[str, str]:
    value = r.choice(
        [_digits(r, r.randint(6, 11)), f"{_digits(r, 2)}-{_digits(r, 4)}-{_digits(r, 3)}"]
    )
    return _pick(r, "account number ", "bank account ", "Acct # ", "Kontonummer "), value


def au_tfn(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        value = str(r.randint(1, 9)) + _digits(r, 8)
        if tfn.is_valid(value):
            break
    if r.random() < 0.5:
        value = f"{value[:3]} {value[3:6]} {value[6:]}"
    return _pick(r, "TFN ", "my tax file number is "), value


def au_medicare(r: random.Random, f: Faker) -> tuple[str, str]:
    body = str(r.randint(2, 6)) + _digits(r, 7)
    check = sum(int(d) * w for d, w in zip(body, (1, 3, 7, 9, 1, 3, 7, 9), strict=True)) % 10
    value = f"{body}{check}{r.randint(1, 9)}"
    if r.random() < 0.5:
        value = f"{value[:4]} {value[4:9]} {value[9:]}"
    return _pick(r, "Medicare number ", "medicare card "), value


def ca_sin(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        body = str(r.randint(1, 7)) + _digits(r, 7)
        value = body + luhn.calc_check_digit(body)
        if sin.is_valid(value):
            break
    if r.random() < 0.5:
        value = f"{value[:3]}-{value[3:6]}-{value[6:]}"
    return _pick(r, "SIN ", "my social insurance number is "), value


def br_cpf(r: random.Random, f: Faker) -> tuple[str, str]:
    while True:
        value = _digits(r, 11)
        if cpf.is_valid(value):
            break
    if r.random() < 0.5:
        return _pick(r, "CPF ", "meu CPF é ", ""), cpf.format(value)
    return _pick(r, "CPF ", "meu CPF é "), value


def pl_pesel(r: random.Random, f: Faker) -> tuple[str, str]:
    year, month, day = r.randint(1930, 2020), r.randint(1, 12), r.randint(1, 28)
    body = f"{year % 100:02d}{month + (20 if year >= 2000 else 0):02d}{day:02d}{_digits(r, 4)}"
    return _pick(r, "PESEL ", "numer PESEL "), body + pesel.calc_check_digit(body)


def sg_nric(r: random.Random, f: Faker) -> tuple[str, str]:
    first = r.choice("STFGM")
    body = _digits(r, 7)
    total = {"S": 0, "F": 0, "T": 4, "G": 4, "M": 3}[first]
    total += sum(int(d) * w for d, w in zip(body, (2, 7, 6, 5, 4, 3, 2), strict=True))
    letters = {"S": "JZIHGFEDCBA", "T": "JZIHGFEDCBA", "M": "XWUTRQPNJLK"}
    return _pick(r, "NRIC ", "FIN ", ""), first + body + letters.get(first, "XWUTRQPNMLK")[total % 11]


def age(r: random.Random, f: Faker) -> tuple[str, str]:
    n = str(r.randint(18, 95))
    return "", n  # the template adds "aged" / "years old" around it


GENERATORS: dict[str, Gen] = {
    name: fn
    for name, fn in globals().items()
    if callable(fn) and getattr(fn, "__module__", None) == __name__ and not name.startswith("_")
    and name in {
        "email", "phone", "credit_card", "iban", "aba", "swift", "us_ssn", "us_itin",
        "uk_nino", "uk_nhs", "passport", "de_tax_id", "fr_nir", "es_dni", "es_nie", "it_codice_fiscale", "nl_bsn",
        "in_aadhaar", "in_pan", "ip_address", "mac_address", "aws_access_key",
        "aws_secret_key", "github_token", "slack_token", "slack_webhook", "openai_key",
        "anthropic_key", "stripe_key", "google_api_key", "jwt", "private_key", "password",
        "url_credentials", "date_of_birth", "age", "driver_license", "medical_record_number",
        "account_number", "de_tax_number", "de_vat_id", "au_tfn", "au_medicare", "ca_sin",
        "br_cpf", "pl_pesel", "sg_nric",
    }
}  # fmt: skip
KIND_OF = {"aba": "aba_routing", "swift": "swift_bic"}


# -- distractors ---------------------------------------------------------------------


def _bad_luhn(r: random.Random) -> str:
    while True:
        n = "4" + _digits(r, 15)
        if not luhn.is_valid(n):
            return " ".join(n[i : i + 4] for i in range(0, 16, 4)) if r.random() < 0.5 else n


def _bad_iban(r: random.Random, f: Faker) -> str:
    value = f.iban()
    check = int(value[2:4])
    return value[:2] + f"{(check + r.randint(1, 50)) % 97 + 2:02d}"[-2:] + value[4:]


DISTRACTORS: dict[str, Callable[[random.Random, Faker], str]] = {
    "order_number": lambda r, f: r.choice(["order #", "Order ", "order no. "]) + _digits(r, r.randint(6, 12)),
    "invoice": lambda r, f: f"INV-{r.randint(2019, 2026)}-{_digits(r, 6)}",
    "tracking_ups": lambda r, f: "1Z" + _alnum(r, 6, string.ascii_uppercase + string.digits) + _digits(r, 10),
    "tracking_usps": lambda r, f: " ".join(["9400", _digits(r, 4), _digits(r, 4), _digits(r, 4), _digits(r, 4), _digits(r, 2)]),
    "tracking_fedex": lambda r, f: "tracking " + _digits(r, 12),
    "uuid": lambda r, f: f.uuid4(),
    "guid_braced": lambda r, f: "{" + f.uuid4().upper() + "}",
    "version": lambda r, f: r.choice(["v", "version ", "release "]) + ".".join(str(r.randint(0, 20)) for _ in range(r.choice([3, 4]))),
    "timestamp": lambda r, f: f.iso8601() if r.random() < 0.5 else f.date_time().strftime("%Y-%m-%d %H:%M:%S"),
    "time": lambda r, f: f.time(),
    "date": lambda r, f: f.date(),
    "price": lambda r, f: r.choice(["$", "€", "£", "USD "]) + f"{r.randint(1, 99999):,}.{r.randint(0, 99):02d}",
    "bad_luhn_card": lambda r, f: _bad_luhn(r),
    "bad_iban": _bad_iban,
    "bad_ssn": lambda r, f: r.choice(["000", "666", "9" + _digits(r, 2)]) + f"-{r.randint(0, 49):02d}-" + _digits(r, 4) if r.random() < 0.5 else f"{_digits(r, 3)}-00-{_digits(r, 4)}",
    "code_identifier": lambda r, f: r.choice(["user_id_", "MAX_RETRIES_", "tmp", "var", "S", "C", "H", "D", "INTRODUCTORY"]) + (str(r.randint(0, 9999)) if r.random() < 0.8 else ""),
    "hex_hash": lambda r, f: r.choice([f.sha1(), f.sha256(), f.md5(), f.sha1()[:7]]),
    "percent": lambda r, f: f"{r.randint(1, 100)}.{r.randint(0, 9)}%",
    "dimensions": lambda r, f: f"{r.randint(100, 4000)}x{r.randint(100, 4000)}",
    "phone_like_too_short": lambda r, f: f"ext. {_digits(r, 4)}",
    "model_name": lambda r, f: r.choice(["gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "llama-3.1-70b", "S3 bucket", "C4 model", "H100"]),
    "big_number": lambda r, f: f"{r.randint(10**6, 10**10):,}",
    "coordinates": lambda r, f: f"{f.latitude()}, {f.longitude()}",
}  # fmt: skip


def _sentence(r: random.Random, f: Faker) -> str:
    return f.sentence(nb_words=r.randint(4, 16))


def _wrap_value(r: random.Random, kind: str, prefix: str, value: str) -> tuple[str, int, int]:
    if kind == "age":
        if r.random() < 0.5:
            text = f"I am {value} years old"
            return text, 5, 5 + len(value)
        text = f"aged {value}"
        return text, 5, 5 + len(value)
    text = prefix + value
    return text, len(prefix), len(text)


def generate(seed: int, density: str, count: int) -> list[Text]:
    """``count`` texts; dense: a value or distractor every ~200 characters, sparse: ~1 per KB."""
    r = random.Random(seed)
    f = Faker("en_US")
    f.seed_instance(seed)
    gap = 200 if density == "dense" else 1000
    kinds = sorted(GENERATORS)
    distractor_types = sorted(DISTRACTORS)
    out: list[Text] = []
    for _ in range(count):
        target = r.randint(100, 1500)
        item = Text("")
        parts: list[str] = []
        length = 0
        next_insert = r.randint(0, gap)
        while length < target:
            if length >= next_insert:
                next_insert = length + int(r.expovariate(1 / gap)) + 20
                if r.random() < 0.6:
                    name = r.choice(kinds)
                    prefix, value = GENERATORS[name](r, f)
                    piece, vs, ve = _wrap_value(r, name, prefix, value)
                    item.labels.append((length + vs, length + ve, KIND_OF.get(name, name)))
                else:
                    name = r.choice(distractor_types)
                    piece = DISTRACTORS[name](r, f)
                    item.distractors.append((length, length + len(piece), name))
                piece += r.choice([". ", ", ", " ", ".\n"])
            else:
                piece = _sentence(r, f) + " "
            parts.append(piece)
            length += len(piece)
        item.text = "".join(parts)
        out.append(item)
    return out


def generate_short(seed: int, count: int) -> list[Text]:
    """``count`` chat messages of 50 to 200 characters, most without any value.

    About a third carry one value (from the same generators as the long corpus, with
    their labels) and a tenth one distractor; the rest is Faker prose only, which is
    what most messages sent to a model are.
    """
    r = random.Random(seed)
    f = Faker("en_US")
    f.seed_instance(seed)
    kinds = sorted(GENERATORS)
    distractor_types = sorted(DISTRACTORS)
    out: list[Text] = []
    while len(out) < count:
        item = Text("")
        text = _sentence(r, f)
        roll = r.random()
        if roll < 0.35:
            name = r.choice(kinds)
            prefix, value = GENERATORS[name](r, f)
            piece, vs, ve = _wrap_value(r, name, prefix, value)
            if len(piece) > 150:
                continue
            head = text + " " if r.random() < 0.5 else ""
            item.labels.append((len(head) + vs, len(head) + ve, KIND_OF.get(name, name)))
            text = head + piece + r.choice([".", "", " thanks.", ", ok?"])
        elif roll < 0.45:
            name = r.choice(distractor_types)
            piece = DISTRACTORS[name](r, f)
            item.distractors.append((len(text) + 1, len(text) + 1 + len(piece), name))
            text = text + " " + piece + "."
        while len(text) < 50:
            text += " " + _sentence(r, f)
        if len(text) > 200:
            if any(e > 200 for _, e, _ in item.labels + item.distractors):
                continue
            text = text[:200]
        item.text = text
        out.append(item)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", choices=["dense", "sparse"], default="dense")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--out", default="-")
    args = parser.parse_args(argv)
    texts = generate(args.seed, args.density, args.texts)
    stream = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    with stream:
        for item in texts:
            stream.write(
                json.dumps(
                    {"text": item.text, "labels": item.labels, "distractors": item.distractors},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
