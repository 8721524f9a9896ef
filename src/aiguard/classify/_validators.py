"""Checksums and structural checks for candidate values, cheapest first.

Each function takes the compact value (separators removed, upper-cased where letters
matter) and answers whether it is a real value of its kind. Where python-stdnum has
the identifier, its validator is the authority; the hand-written checks are for
identifiers it lacks (UK NINO) or where a faster path helps the hot loop (Luhn).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import ipaddress
import json
import math
import re
from collections import Counter
from dataclasses import dataclass

from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    is_valid_number,
    parse,
)
from stdnum import bic as _bic
from stdnum import iban as _iban
from stdnum import verhoeff as _verhoeff
from stdnum.au import tfn as _tfn
from stdnum.br import cpf as _cpf
from stdnum.ca import sin as _sin
from stdnum.de import idnr as _idnr
from stdnum.de import stnr as _stnr
from stdnum.de import vat as _de_vat
from stdnum.es import dni as _dni
from stdnum.es import nie as _nie
from stdnum.fr import nir as _nir
from stdnum.gb import nhs as _nhs
from stdnum.in_ import pan as _pan
from stdnum.it import codicefiscale as _cf
from stdnum.nl import bsn as _bsn
from stdnum.pl import pesel as _pesel
from stdnum.us import rtn as _rtn

__all__ = [
    "aadhaar_valid",
    "au_medicare_valid",
    "au_tfn_valid",
    "br_cpf_valid",
    "ca_sin_valid",
    "aba_valid",
    "bic_valid",
    "bsn_valid",
    "card_valid",
    "codice_fiscale_valid",
    "date_valid",
    "de_vat_valid",
    "dni_valid",
    "entropy",
    "iban_length",
    "iban_valid",
    "idnr_valid",
    "ip_valid",
    "itin_valid",
    "discord_token_valid",
    "jwt_valid",
    "luhn_valid",
    "nhs_valid",
    "nie_valid",
    "nino_valid",
    "nir_valid",
    "pan_valid",
    "pesel_valid",
    "sg_nric_valid",
    "ssn_valid",
    "stnr_valid",
    "valid_phone",
]

# Each digit as the digit sum of its double: what Luhn adds for every second digit.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) over a string of ASCII digits; False for anything else."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    # Summing bytes runs in C; a loop over the digits costs ten times as much.
    kept = digits[-1::-2].encode()
    doubled = digits[-2::-2].translate(_LUHN_DOUBLED).encode()
    return (sum(kept) + sum(doubled) - 48 * len(digits)) % 10 == 0


# Issuer ranges of the card networks that issue personal cards (IIN prefixes).
_CARD_IIN = re.compile(
    r"4|5[1-5]|2(?:2(?:2[1-9]|[3-9]\d)|[3-6]\d\d|7(?:[01]\d|20))|3[47]|3(?:0[0-5]|09|[68])"
    r"|6(?:011|5|4[4-9]|22)|35|2131|1800|62|81|50|5[06-9]|6[037]"
)
# Lengths by prefix where the network fixes them; Maestro (50, 56-69) runs 12 to 19.
_CARD_LENGTHS = {
    "4": (13, 16, 19),
    "34": (15,),
    "37": (15,),
    "36": (14, 16, 19),
    "2": (16,),
    "5": (16,),
    "21": (15,),
    "18": (15,),
}
_MAESTRO = re.compile(r"5[06-9]|6")


def card_valid(digits: str) -> bool:
    """A payment card: a known issuer prefix, a length that issuer uses, and Luhn."""
    if _CARD_IIN.match(digits) is None:
        return False
    lengths = _CARD_LENGTHS.get(digits[:2]) or _CARD_LENGTHS.get(digits[:1])
    if lengths is not None and len(digits) not in lengths and _MAESTRO.match(digits) is None:
        return False
    if len(digits) < 13 and _MAESTRO.match(digits) is None:
        return False
    return luhn_valid(digits)


def ssn_valid(digits: str) -> bool:
    """US SSN: area not 000, 666 or 9xx, group not 00, serial not 0000."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (
        area not in ("000", "666")
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
        # Numbers the SSA voided after they were printed on sample cards and ads.
        and digits not in ("078051120", "219099999", "123456789")
    )


def itin_valid(digits: str) -> bool:
    """US ITIN: 9xx-GG-xxxx with the group in the ranges the IRS issues."""
    if digits[0] != "9":
        return False
    group = int(digits[3:5])
    return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99


def aba_valid(digits: str) -> bool:
    """US bank routing transit number: weighted checksum 3-7-1 and a Fed district prefix."""
    prefix = int(digits[:2])
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    return bool(_rtn.is_valid(digits))


# HMRC: first letter not D, F, I, Q, U, V; second not D, F, I, O, Q, U, V; some
# prefixes never issued; the suffix is A to D.
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-D]")
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def nino_valid(value: str) -> bool:
    """UK National Insurance number (python-stdnum does not have it)."""
    return _NINO.fullmatch(value) is not None and value[:2] not in _NINO_BAD_PREFIX


def idnr_valid(digits: str) -> bool:
    """German tax id (Steuer-IdNr): digit distribution rule and ISO 7064 check digit."""
    return bool(_idnr.is_valid(digits))


def stnr_valid(digits: str) -> bool:
    """German Steuernummer: a regional form (10 or 11 digits, any is well formed) or the
    13-digit federal form, whose leading tax office number python-stdnum checks."""
    return len(digits) != 13 or bool(_stnr.is_valid(digits))


def de_vat_valid(value: str) -> bool:
    """German VAT id (USt-IdNr): DE and nine digits, ISO 7064 mod 11,10 check digit."""
    return bool(_de_vat.is_valid(value))


def nir_valid(value: str) -> bool:
    """French NIR (numéro de sécurité sociale): sex digit, month, and the mod-97 key."""
    month = value[3:5]
    if value[0] not in "12378" or not ("01" <= month <= "12" or "20" <= month <= "42"):
        return False
    return bool(_nir.is_valid(value))


def dni_valid(value: str) -> bool:
    """Spanish DNI: eight digits and the check letter."""
    return bool(_dni.is_valid(value))


def nie_valid(value: str) -> bool:
    """Spanish NIE: X, Y or Z, seven digits and the check letter."""
    return bool(_nie.is_valid(value))


def codice_fiscale_valid(value: str) -> bool:
    """Italian codice fiscale (16 characters) with its check character."""
    return bool(_cf.is_valid(value))


def nhs_valid(digits: str) -> bool:
    """UK NHS number: python-stdnum `gb.nhs` (mod 11); ten equal digits pass it too."""
    return digits != digits[0] * 10 and bool(_nhs.is_valid(digits))


def bsn_valid(digits: str) -> bool:
    """Dutch BSN: the eleven-test."""
    return digits != "000000000" and bool(_bsn.is_valid(digits))


def aadhaar_valid(digits: str) -> bool:
    """Indian Aadhaar: twelve digits, not starting with 0 or 1, Verhoeff checksum."""
    return digits[0] not in "01" and digits != digits[::-1] and bool(_verhoeff.is_valid(digits))


def pan_valid(value: str) -> bool:
    """Indian PAN: five letters (the fourth names the holder type), four digits, a letter."""
    return bool(_pan.is_valid(value))


def au_tfn_valid(digits: str) -> bool:
    """Australian tax file number: eight or nine digits, weighted mod 11."""
    return digits != digits[0] * len(digits) and bool(_tfn.is_valid(digits))


_MEDICARE_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9)


def au_medicare_valid(digits: str) -> bool:
    """Australian Medicare card number: ten digits (eleven with the holder's issue
    number), the first 2 to 6, the ninth a weighted mod-10 check of the first eight.
    python-stdnum has no module for it; Services Australia publishes the weights."""
    if len(digits) not in (10, 11) or digits[0] not in "23456" or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], _MEDICARE_WEIGHTS, strict=True))
    return total % 10 == int(digits[8])


def ca_sin_valid(digits: str) -> bool:
    """Canadian social insurance number: nine digits, Luhn, no 0 or 8 first."""
    return bool(_sin.is_valid(digits))


def br_cpf_valid(digits: str) -> bool:
    """Brazilian CPF: eleven digits, two mod-11 check digits; repeated digits refused."""
    return bool(_cpf.is_valid(digits))


def pesel_valid(digits: str) -> bool:
    """Polish PESEL: a birth date (the month carries the century), a serial and a
    weighted check digit."""
    return bool(_pesel.is_valid(digits))


# Check letters by the weighted sum mod 11, per first letter (S/T citizens, F/G
# foreigners, M foreigners from 2022); T, G and M add an offset to the sum.
_NRIC_LETTERS = {"S": "JZIHGFEDCBA", "T": "JZIHGFEDCBA", "F": "XWUTRQPNMLK", "G": "XWUTRQPNMLK"}
_NRIC_LETTERS["M"] = "XWUTRQPNJLK"
_NRIC_OFFSET = {"S": 0, "F": 0, "T": 4, "G": 4, "M": 3}
_NRIC_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)


def sg_nric_valid(value: str) -> bool:
    """Singapore NRIC or FIN: a letter, seven digits and the check letter. python-stdnum
    has no module for it; the weights are the published ones."""
    first, body, check = value[:1], value[1:8], value[8:]
    if len(value) != 9 or first not in _NRIC_OFFSET or not body.isdigit():
        return False
    total = _NRIC_OFFSET[first] + sum(int(d) * w for d, w in zip(body, _NRIC_WEIGHTS, strict=True))
    return _NRIC_LETTERS[first][total % 11] == check


# Letters to their ISO 13616 numbers (A=10 ... Z=35) for the mod-97 check.
_IBAN_DIGITS = {ord(c): str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def iban_valid(value: str) -> bool:
    """IBAN: the country's length and BBAN format, and the ISO 7064 mod-97 check.

    The national check digits inside the BBAN (Belgium, Spain, France, ...) are not
    required: a typo'd or test account number that passes mod-97 is still one the
    user typed. Same answer as ``stdnum.iban.is_valid(value, check_country=False)``
    (a test checks), without its registry lookup on every call.
    """
    struct = _iban_struct(value[:2])
    if struct is None or len(value) != struct[0] or not value.isalnum():
        return False
    if struct[1].match(value[4:]) is None:
        return False
    rearranged = (value[4:] + value[:4]).translate(_IBAN_DIGITS)
    return rearranged.isdigit() and int(rearranged) % 97 == 1


@functools.cache
def _iban_struct(country: str) -> tuple[int, re.Pattern[str]] | None:
    info = _iban._ibandb.info(country)
    if not info or not info[0][1] or "bban" not in info[0][1]:
        return None
    bban = info[0][1]["bban"]
    length = 4 + sum(int(n) for n in re.findall(r"[0-9]+", bban))
    return length, _iban._struct_to_re(bban)


def iban_length(country: str) -> int | None:
    """The IBAN length of ``country`` (ISO 3166 alpha-2, upper case), None if it has none."""
    struct = _iban_struct(country)
    return struct[0] if struct else None


def bic_valid(value: str) -> bool:
    """SWIFT/BIC: bank, ISO country, location and optional branch codes."""
    return bool(_bic.is_valid(value))


def ip_valid(value: str) -> bool:
    """Anything the stdlib parses as an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def jwt_valid(value: str) -> bool:
    """A JWT: the header decodes to a JSON object naming an algorithm."""
    header = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        parsed = json.loads(decoded)
    except (binascii.Error, ValueError):
        return False
    return isinstance(parsed, dict) and "alg" in parsed


def discord_token_valid(value: str) -> bool:
    """A Discord bot token: its first part is the bot's user id, a snowflake of 17 to 20
    decimal digits, in base64 (so a dotted name of that shape is not one)."""
    user_id = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(user_id + "=" * (-len(user_id) % 4))
    except (binascii.Error, ValueError):
        return False
    return 17 <= len(decoded) <= 20 and decoded.isdigit() and decoded[:1] != b"0"


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    counts = Counter(value).values()
    # H = log2(n) - sum(c * log2(c)) / n: one log per distinct character, no division.
    return math.log2(n) - sum(c * math.log2(c) for c in counts) / n


_MONTHS = {
    name: i
    for i, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}


def date_valid(year: int, month: int | str, day: int) -> bool:
    """A real calendar date in the last 130 years (a date of birth, not a due date)."""
    if isinstance(month, str):
        month_number = _MONTHS.get(month.lower().rstrip("."))
        if month_number is None:
            return False
        month = month_number
    if year < 100:
        year += 1900 if year > datetime.date.today().year % 100 else 2000
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return False
    today = datetime.date.today()
    return today.year - 130 <= date.year and date <= today


# Regions whose national format is a plain trunk prefix (or none), with their
# international call prefix; valid_phone agrees with parse for them (a test checks).
_FAST_REGIONS = {
    "US": "011",
    "CA": "011",
    "GB": "00",
    "DE": "00",
    "AT": "00",
    "CH": "00",
    "FR": "00",
    "BE": "00",
    "ES": "00",
    "IT": "00",
    "NL": "00",
    "IN": "00",
}


# The number types phonenumbers' `_number_type_helper` tries after the general pattern;
# a number is valid for a region when it matches the general pattern and one of these.
_TYPE_DESCS = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True, slots=True)
class _RegionRules:
    """A region's validity rules from phonenumbers' metadata, compiled once: per length,
    one alternation of the type patterns that admit that length."""

    general_lengths: frozenset[int]
    general: re.Pattern[str]
    types_by_length: dict[int, re.Pattern[str]]
    types_any_length: re.Pattern[str] | None
    leading_digits: re.Pattern[str] | None

    def valid(self, nsn: str) -> bool:
        length = len(nsn)
        if self.general_lengths and length not in self.general_lengths:
            return False
        if self.general.fullmatch(nsn) is None:
            return False
        types = self.types_by_length.get(length, self.types_any_length)
        return types is not None and types.fullmatch(nsn) is not None


@functools.cache
def _region_rules(region: str) -> _RegionRules | None:
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None:
        return None
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return None
    typed: list[tuple[frozenset[int], str]] = []
    for name in _TYPE_DESCS:
        desc = getattr(metadata, name)
        if desc is not None and desc.national_number_pattern:
            typed.append((frozenset(desc.possible_length), desc.national_number_pattern))
    lengths = {n for admitted, _ in typed for n in admitted}

    def alternation(patterns: list[str]) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    by_length = {
        n: alternation([p for admitted, p in typed if not admitted or n in admitted])
        for n in lengths
    }
    return _RegionRules(
        frozenset(general.possible_length),
        re.compile(general.national_number_pattern),
        {n: pattern for n, pattern in by_length.items() if pattern is not None},
        alternation([p for admitted, p in typed if not admitted]),
        re.compile(metadata.leading_digits) if metadata.leading_digits else None,
    )


def _valid_for_region(nsn: str, region: str) -> bool:
    """``phonenumbers.is_valid_number_for_region`` for a national significant number of the
    region's own country code."""
    rules = _region_rules(region)
    return rules is not None and rules.valid(nsn)


def _valid_nsn(nsn: str, region: str, regions: tuple[str, ...]) -> bool:
    """``is_valid_number_for_region(number, region) or is_valid_number(number)`` for the
    national significant number of a number whose country code ``regions`` share (the
    first is its main region). ``region`` is tried first: one type check instead of one
    per region sharing the code (GB, GG, IM, JE)."""
    if _valid_for_region(nsn, region):
        return True
    if len(regions) == 1:
        return region != regions[0] and _valid_for_region(nsn, regions[0])
    # The region the number belongs to decides, as `region_code_for_number` picks it.
    for candidate in regions:
        rules = _region_rules(candidate)
        if rules is None:
            continue
        if rules.leading_digits is not None:
            if rules.leading_digits.match(nsn):
                return rules.valid(nsn)
        elif rules.valid(nsn):
            return True
    return False


def _nsn_candidates(digits: str, region: str) -> tuple[int, tuple[str, ...]] | None:
    """The country code of ``region`` and its national significant numbers for ``digits``."""
    if region not in _FAST_REGIONS:
        return None  # not checked against parse: leave it to phonenumbers.parse
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.national_prefix_transform_rule:
        return None
    prefix = metadata.national_prefix_for_parsing
    if prefix is not None and not prefix.isdigit():
        prefix = metadata.national_prefix if (metadata.national_prefix or "").isdigit() else None
    cc = metadata.country_code
    if cc is None:
        return None
    if prefix and digits.startswith(prefix) and len(digits) > len(prefix):
        return cc, (digits[len(prefix) :], digits)
    return cc, (digits,)


def valid_phone(digits: str, plus: bool, region: str | None) -> bool:
    """What ``phonenumbers.is_valid_number(phonenumbers.parse(...))`` says, without parse.

    Parsing is most of phonenumbers' cost; for the regions whose national format is a
    plain trunk prefix the number is built directly (checked against parse by a test).
    """
    if plus:
        if digits[:1] in ("", "0"):
            return False
        for size in (1, 2, 3):
            cc = int(digits[:size])
            regions = COUNTRY_CODE_TO_REGION_CODE.get(cc)
            if regions:
                break
        else:
            return False
        rest = digits[size:]
        if len(rest) < 2:
            return False
        found = _nsn_candidates(rest, regions[0])
        if found is None:
            try:
                return bool(is_valid_number(parse("+" + digits, None)))
            except NumberParseException:
                return False
        return any(len(nsn) >= 2 and _valid_nsn(nsn, regions[0], regions) for nsn in found[1])
    assert region is not None
    found = _nsn_candidates(digits, region)
    if found is None:
        try:
            return bool(is_valid_number(parse(digits, region)))
        except NumberParseException:
            return False
    cc, candidates = found
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc, (region,))
    if any(len(nsn) >= 2 and _valid_nsn(nsn, region, regions) for nsn in candidates):
        return True
    # As parse does: an international call prefix ("00", "011") or the region's own
    # country code written without "+".
    idd = _FAST_REGIONS[region]
    if digits.startswith(idd) and len(digits) > len(idd) + 2:
        return valid_phone(digits[len(idd) :], True, None)
    if digits.startswith(str(cc)) and len(digits) > len(str(cc)) + 2:
        return valid_phone(digits, True, None)
    return False
