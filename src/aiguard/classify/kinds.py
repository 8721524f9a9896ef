"""The kinds aiguard detects, their default levels, and locale packs of national ids.

A locale pack adds national identifiers to the built-in detector and region hints for
phone numbers. Add one for a country the built-ins do not cover::

    from aiguard.classify.kinds import IdSpec, LocalePack, register_locale

    register_locale(
        LocalePack(
            "se",
            phone_regions=("SE",),
            ids=(
                IdSpec(
                    "se_personnummer",
                    Level.REGULATED,
                    lengths=frozenset({10, 12}),
                    shape=r"(?:19|20)?[0-9]{6}[-+]?[0-9]{4}",
                    validate=stdnum.se.personalid.is_valid,
                    context=("personnummer",),
                ),
            ),
        )
    )

after which ``detect(text, locales=["se"])`` (and ``locales=None``, meaning every
registered pack) finds them. ``shape`` is matched against the candidate as written
(with its separators); ``validate`` receives the compact, upper-cased value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import _validators as v
from .levels import Level, add_known_kinds, check_kind

__all__ = [
    "DEFAULT_LEVELS",
    "IdSpec",
    "LocalePack",
    "locale_packs",
    "register_locale",
]

#: Default level of every built-in kind; a policy overrides them per kind.
DEFAULT_LEVELS: dict[str, Level] = {
    # contact
    "email": Level.SENSITIVE,
    "phone": Level.SENSITIVE,
    "url_credentials": Level.REGULATED,
    # financial
    "credit_card": Level.REGULATED,
    "iban": Level.REGULATED,
    "aba_routing": Level.INTERNAL,
    "swift_bic": Level.INTERNAL,
    "account_number": Level.SENSITIVE,
    # government ids
    "us_ssn": Level.REGULATED,
    "us_itin": Level.REGULATED,
    "uk_nino": Level.REGULATED,
    "uk_nhs": Level.REGULATED,
    "passport": Level.REGULATED,
    "driver_license": Level.REGULATED,
    "de_tax_id": Level.REGULATED,
    "de_tax_number": Level.REGULATED,
    "de_vat_id": Level.INTERNAL,
    "fr_nir": Level.REGULATED,
    "es_dni": Level.REGULATED,
    "es_nie": Level.REGULATED,
    "it_codice_fiscale": Level.REGULATED,
    "nl_bsn": Level.REGULATED,
    "in_aadhaar": Level.REGULATED,
    "in_pan": Level.REGULATED,
    "au_tfn": Level.REGULATED,
    "au_medicare": Level.REGULATED,
    "ca_sin": Level.REGULATED,
    "br_cpf": Level.REGULATED,
    "pl_pesel": Level.REGULATED,
    "sg_nric": Level.REGULATED,
    # health
    "medical_record_number": Level.REGULATED,
    # network and device
    "ip_address": Level.SENSITIVE,
    "mac_address": Level.SENSITIVE,
    # secrets
    "aws_access_key": Level.REGULATED,
    "aws_secret_key": Level.REGULATED,
    "github_token": Level.REGULATED,
    "slack_token": Level.REGULATED,
    "slack_webhook": Level.REGULATED,
    "openai_key": Level.REGULATED,
    "anthropic_key": Level.REGULATED,
    "stripe_key": Level.REGULATED,
    "google_api_key": Level.REGULATED,
    "jwt": Level.REGULATED,
    "private_key": Level.REGULATED,
    "password": Level.REGULATED,
    "secret": Level.REGULATED,
    # personal facts in context
    "date_of_birth": Level.SENSITIVE,
    "age": Level.INTERNAL,
}

# Shapes shared by several ids: nine digits as 3-2-4 with one separator, or bare.
_SSN_SHAPE = r"[0-9]{3}([- .])[0-9]{2}\1[0-9]{4}"
_NINE_BARE = r"[0-9]{9}"


@dataclass(frozen=True, slots=True)
class IdSpec:
    """How to recognise and validate one identifier found around a run of digits.

    Candidates are tried in order of cost: the compact length (a dict lookup), then
    ``shape`` (a regex on the candidate as written), then ``validate`` (checksum), then
    context words. ``score`` is the confidence without context words nearby; below
    the detector's threshold (0.5) such a value needs a context word, which raises it
    to ``context_score``. Context words match whole words only, within a few words
    before the value.
    """

    kind: str
    level: Level
    lengths: frozenset[int]
    shape: str
    validate: Callable[[str], bool]
    score: float = 0.9
    context: tuple[str, ...] = ()
    context_score: float = 0.99
    #: Letters the value starts with (0 for ids that start with a digit).
    letters: int = 0
    #: Bare-digit forms that are too common to trust without a context word.
    bare_score: float | None = None
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)
    context_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    #: The context words long enough to stand as evidence on their own (not "ss", "cc").
    evidence_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_kind(self.kind)
        object.__setattr__(self, "compiled", re.compile(self.shape, re.IGNORECASE))
        words = "|".join(re.escape(w).replace(r"\ ", r"[\s_-]*") for w in self.context)
        object.__setattr__(
            self,
            "context_re",
            re.compile(rf"(?<![a-z0-9])(?:{words})(?![a-z0-9])") if words else None,
        )
        strong = "|".join(
            re.escape(w).replace(r"\ ", r"[\s_-]*") for w in self.context if len(w) >= 3
        )
        object.__setattr__(
            self,
            "evidence_re",
            re.compile(rf"(?<![a-z0-9])(?:{strong})(?![a-z0-9])") if strong else None,
        )


@dataclass(frozen=True, slots=True)
class LocalePack:
    """National identifiers and phone regions for one locale (lower-case code)."""

    code: str
    phone_regions: tuple[str, ...] = ()
    ids: tuple[IdSpec, ...] = ()
    #: Words that make a bare run of digits a phone number ("Telefon 030123456").
    phone_words: tuple[str, ...] = ()


_PACKS: dict[str, LocalePack] = {}
_PACKS_VERSION = [0]


def register_locale(pack: LocalePack) -> None:
    """Add (or replace) a locale pack; detectors built afterwards include it."""
    _PACKS[pack.code.lower()] = pack
    _PACKS_VERSION[0] += 1
    add_known_kinds(spec.kind for spec in pack.ids)


def packs_version() -> int:
    """Changes whenever a pack is registered: part of every cached engine's key."""
    return _PACKS_VERSION[0]


def locale_packs(codes: Iterable[str] | None = None) -> tuple[LocalePack, ...]:
    """The registered packs for ``codes`` (all of them for None); unknown codes raise."""
    if codes is None:
        return tuple(_PACKS.values())
    packs = []
    for code in codes:
        pack = _PACKS.get(code.lower())
        if pack is None:
            known = ", ".join(sorted(_PACKS))
            raise ValueError(f"unknown locale {code!r}; registered locales: {known}")
        packs.append(pack)
    return tuple(packs)


def _n(*lengths: int) -> frozenset[int]:
    return frozenset(lengths)


#: Ids every locale shares: payment cards and IBANs travel across borders.
GLOBAL_IDS: tuple[IdSpec, ...] = (
    IdSpec(
        "credit_card",
        DEFAULT_LEVELS["credit_card"],
        _n(*range(13, 20)),
        r"[0-9]{13,19}|[0-9]{4}([ ._/-])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{3})?"
        r"|[0-9]{4}([ ._/-])[0-9]{6}\2[0-9]{4,5}",
        v.card_valid,
        score=0.95,
        context=(
            "card",
            "credit card",
            "visa",
            "mastercard",
            "amex",
            "cc",
            "kreditkarte",
            "karte",
            "carte",
            "tarjeta",
            "carta",
            "creditcard",
            "kaart",
        ),
    ),
    # Twelve-digit Maestro cards look like any order number: only with a card word.
    IdSpec(
        "credit_card",
        DEFAULT_LEVELS["credit_card"],
        _n(12),
        r"[0-9]{12}|[0-9]{4}([ ._/-])[0-9]{4}\1[0-9]{4}",
        v.card_valid,
        score=0.3,
        context=("card", "debit card", "maestro", "pay with", "card number", "cc"),
    ),
)

_BUILTIN_PACKS = (
    LocalePack(
        "us",
        phone_regions=("US", "CA"),
        phone_words=("phone", "call", "tel", "mobile", "cell", "text", "sms", "fax"),
        ids=(
            IdSpec(
                "us_itin",
                DEFAULT_LEVELS["us_itin"],
                _n(9),
                _SSN_SHAPE + "|" + _NINE_BARE,
                v.itin_valid,
                context=("itin", "taxpayer", "tax id"),
                bare_score=0.3,
            ),
            IdSpec(
                "us_ssn",
                DEFAULT_LEVELS["us_ssn"],
                _n(9),
                _SSN_SHAPE + "|" + _NINE_BARE,
                v.ssn_valid,
                context=("ssn", "social security", "social security number", "ss"),
                bare_score=0.3,
            ),
            IdSpec(
                "aba_routing",
                DEFAULT_LEVELS["aba_routing"],
                _n(9),
                _NINE_BARE,
                v.aba_valid,
                score=0.3,
                context=("routing", "aba", "rtn", "routing number", "transit"),
            ),
        ),
    ),
    LocalePack(
        "uk",
        phone_regions=("GB",),
        phone_words=("phone", "mobile", "tel", "ring"),
        ids=(
            IdSpec(
                "uk_nino",
                DEFAULT_LEVELS["uk_nino"],
                _n(9),
                r"[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]",
                v.nino_valid,
                letters=2,
                context=("nino", "national insurance", "ni number", "ni"),
            ),
            IdSpec(
                "uk_nhs",
                DEFAULT_LEVELS["uk_nhs"],
                _n(10),
                r"[0-9]{3}([ -])[0-9]{3}\1[0-9]{4}|[0-9]{10}",
                v.nhs_valid,
                # One random 10-digit number in eleven passes the check, and NHS numbers
                # are written 3-3-4 like North American phone numbers: a word of the
                # kind makes it one.
                score=0.3,
                context=("nhs", "nhs number", "nhs no", "national health service"),
            ),
        ),
    ),
    LocalePack(
        "de",
        phone_regions=("DE", "AT", "CH"),
        phone_words=("telefon", "tel", "handy", "mobil", "anrufen"),
        ids=(
            IdSpec(
                "de_tax_id",
                DEFAULT_LEVELS["de_tax_id"],
                _n(11),
                r"[0-9]{2} [0-9]{3} [0-9]{3} [0-9]{3}|[0-9]{11}",
                v.idnr_valid,
                score=0.8,
                bare_score=0.3,
                context=(
                    "steuer-id",
                    "steuerid",
                    "idnr",
                    "steuer",
                    "steueridentifikationsnummer",
                    "identifikationsnummer",
                    "tax id",
                ),
            ),
            # The regional Steuernummer has no check digit: only its label tells it from
            # any other number of ten or eleven digits.
            IdSpec(
                "de_tax_number",
                DEFAULT_LEVELS["de_tax_number"],
                _n(10, 11, 13),
                r"[0-9]{2,5}([/ ])[0-9]{3,5}(?:\1[0-9]{4,5})?|[0-9]{10,11}|[0-9]{13}",
                v.stnr_valid,
                score=0.3,
                context=(
                    "steuernummer",
                    "steuer-nummer",
                    "steuer-nr",
                    "steuer nr",
                    "st.-nr",
                    "st-nr",
                    "stnr",
                    "tax number",
                ),
            ),
            IdSpec(
                "de_vat_id",
                DEFAULT_LEVELS["de_vat_id"],
                _n(11),
                r"DE[0-9]{9}",
                v.de_vat_valid,
                score=0.3,
                letters=2,
                context=(
                    "ust-idnr",
                    "ust-id",
                    "ustid",
                    "ustidnr",
                    "ust-id-nr",
                    "umsatzsteuer-id",
                    "umsatzsteuer-identifikationsnummer",
                    "vat",
                    "vat id",
                    "vat number",
                    "vat no",
                    "uid",
                    "mwst",
                    "tva",
                    "iva",
                    "btw",
                ),
            ),
        ),
    ),
    LocalePack(
        "fr",
        phone_regions=("FR", "BE"),
        phone_words=("téléphone", "tél", "portable", "appeler"),
        ids=(
            IdSpec(
                "fr_nir",
                DEFAULT_LEVELS["fr_nir"],
                _n(15),
                r"[0-9] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}",
                v.nir_valid,
                context=("nir", "sécurité sociale", "securite sociale", "insee"),
            ),
        ),
    ),
    LocalePack(
        "es",
        phone_regions=("ES",),
        phone_words=("teléfono", "telefono", "móvil", "movil", "llamar"),
        ids=(
            IdSpec(
                "es_dni",
                DEFAULT_LEVELS["es_dni"],
                _n(9),
                r"[0-9]{8}-?[A-Z]",
                v.dni_valid,
                context=("dni", "nif", "documento"),
            ),
            IdSpec(
                "es_nie",
                DEFAULT_LEVELS["es_nie"],
                _n(9),
                r"[XYZ]-?[0-9]{7}-?[A-Z]",
                v.nie_valid,
                letters=1,
                context=("nie", "extranjero"),
            ),
        ),
    ),
    LocalePack(
        "it",
        phone_regions=("IT",),
        phone_words=("telefono", "cellulare", "chiamare"),
        ids=(
            IdSpec(
                "it_codice_fiscale",
                DEFAULT_LEVELS["it_codice_fiscale"],
                _n(16),
                r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-EHLMPR-T][0-9LMNPQRSTUV]{2}[A-Z]"
                r"[0-9LMNPQRSTUV]{3}[A-Z]",
                v.codice_fiscale_valid,
                score=0.95,
                letters=6,
                context=("codice fiscale", "cf"),
            ),
        ),
    ),
    LocalePack(
        "nl",
        phone_regions=("NL",),
        phone_words=("telefoon", "mobiel", "bellen"),
        ids=(
            IdSpec(
                "nl_bsn",
                DEFAULT_LEVELS["nl_bsn"],
                _n(9),
                r"[0-9]{4}\.[0-9]{2}\.[0-9]{3}|" + _NINE_BARE,
                v.bsn_valid,
                score=0.3,
                context=("bsn", "burgerservicenummer", "sofinummer", "sofi"),
            ),
        ),
    ),
    LocalePack(
        "in",
        phone_regions=("IN",),
        phone_words=("phone", "mobile", "call"),
        ids=(
            IdSpec(
                "in_aadhaar",
                DEFAULT_LEVELS["in_aadhaar"],
                _n(12),
                r"[0-9]{4}([ -])[0-9]{4}\1[0-9]{4}|[0-9]{12}",
                v.aadhaar_valid,
                score=0.85,
                bare_score=0.3,
                context=("aadhaar", "aadhar", "uid", "uidai"),
            ),
            IdSpec(
                "in_pan",
                DEFAULT_LEVELS["in_pan"],
                _n(10),
                r"[A-Z]{3}[ABCFGHJLPT][A-Z][0-9]{4}[A-Z]",
                v.pan_valid,
                letters=5,
                context=("pan", "permanent account number", "income tax"),
            ),
        ),
    ),
    # The numbers below have weak checksums (one random number in ten or eleven passes)
    # and the shapes of phone numbers and other ids: written bare, only a word of the
    # kind names them. Phone regions stay out of these packs: a region widens what
    # reads as a phone number everywhere, not only in text of that country.
    LocalePack(
        "au",
        ids=(
            IdSpec(
                "au_tfn",
                DEFAULT_LEVELS["au_tfn"],
                _n(8, 9),
                r"[0-9]{3}([ -]?)[0-9]{3}\1[0-9]{2,3}",
                v.au_tfn_valid,
                score=0.3,
                context=("tfn", "tax file number", "tax file no"),
            ),
            IdSpec(
                "au_medicare",
                DEFAULT_LEVELS["au_medicare"],
                _n(10, 11),
                r"[2-6][0-9]{3}([ -]?)[0-9]{5}\1[0-9](?:[ /-]?[1-9])?",
                v.au_medicare_valid,
                score=0.3,
                context=("medicare", "medicare number", "medicare card", "medicare no"),
            ),
        ),
    ),
    LocalePack(
        "ca",
        ids=(
            IdSpec(
                "ca_sin",
                DEFAULT_LEVELS["ca_sin"],
                _n(9),
                r"[0-9]{3}([ -]?)[0-9]{3}\1[0-9]{3}",
                v.ca_sin_valid,
                score=0.3,
                context=(
                    "sin",
                    "social insurance number",
                    "social insurance no",
                    "numéro d'assurance sociale",
                    "nas",
                ),
            ),
        ),
    ),
    LocalePack(
        "br",
        ids=(
            IdSpec(
                "br_cpf",
                DEFAULT_LEVELS["br_cpf"],
                _n(11),
                # Written 000.000.000-00 it is a CPF; eleven bare digits need the word.
                r"[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}|[0-9]{11}",
                v.br_cpf_valid,
                score=0.95,
                bare_score=0.3,
                context=("cpf", "cadastro de pessoas físicas", "cadastro de pessoa física"),
            ),
        ),
    ),
    LocalePack(
        "pl",
        ids=(
            IdSpec(
                "pl_pesel",
                DEFAULT_LEVELS["pl_pesel"],
                _n(11),
                r"[0-9]{11}",
                v.pesel_valid,
                score=0.3,
                context=("pesel", "numer pesel", "nr pesel"),
            ),
        ),
    ),
    LocalePack(
        "sg",
        ids=(
            IdSpec(
                "sg_nric",
                DEFAULT_LEVELS["sg_nric"],
                _n(9),
                r"[STFGM][0-9]{7}[A-Z]",
                v.sg_nric_valid,
                letters=1,
                context=("nric", "fin", "uin", "ic number", "ic no", "identity card"),
            ),
        ),
    ),
)

add_known_kinds(DEFAULT_LEVELS)
for _pack in _BUILTIN_PACKS:
    _PACKS[_pack.code] = _pack
    add_known_kinds(spec.kind for spec in _pack.ids)
