"""The built-in detector: one cheap pass per anchor class, then validation.

Scanning chat text is dominated by the text that contains nothing, so each anchor
class gets one pass whose regex starts with a character class or a literal (the
regex engine then skips ahead in C without trying every position):

* digits: maximal runs of digits and in-value separators, with letters glued on,
  cover cards, national ids, IBANs, phone numbers and IPv4 addresses;
* ``@``: e-mail addresses and credentials in URLs;
* secret prefixes (``AKIA``, ``ghp_``, ``sk-``, ``eyJ``, ...), each tried only when
  its literal occurs;
* ``:``: IPv6 and MAC addresses;
* context words (``password=``, ``BIC``, ``date of birth``): assignments and values
  that are only personal next to their label.

Each candidate is validated cheapest first: compact length (a dict lookup), shape,
checksum, and only then ``phonenumbers``. Text is folded first (full-width digits,
look-alike letters, invisible characters: see ``_normalize``) and offsets are mapped
back to the caller's string.
"""

from __future__ import annotations

import itertools
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

from . import _validators as v
from ._finding import Finding
from ._normalize import normalize
from .kinds import DEFAULT_LEVELS, GLOBAL_IDS, IdSpec, LocalePack, locale_packs, packs_version
from .levels import Level

__all__ = ["EVIDENCE_SCORE", "MIN_SCORE", "BuiltinDetector"]

_FAR = 1 << 30

#: Findings below this confidence are not reported (values that need a context word).
MIN_SCORE = 0.5

#: Score of a value shaped like its kind, next to a word of its kind, whose checksum or
#: issuance rule fails (see docs/kinds.md, "Evidence").
EVIDENCE_SCORE = 0.6

# Words that name a bank account, in the languages of the built-in locale packs.
_IBAN_EVIDENCE = re.compile(
    r"(?<![a-z0-9])(?:iban|account|acct|bank account|konto|kontonummer|bankverbindung"
    r"|compte|rib|cuenta|conto|rekening|rekeningnummer|bankrekening)(?![a-z0-9])"
)

# A run of digits with letters glued on, and single separators between the groups:
# "4111 1111 1111 1111", "(415) 555-0132", "85T10A562S", "192.168.0.1".
# Bounded so a megabyte of digits is many short runs (each then seen as a fragment),
# which keeps the regex engine's backtracking stack small and the scan linear.
#: Every digit as "0", for one memchr-speed search for any digit (bytes and str forms).
DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
STR_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
_CHUNK = re.compile(r"[0-9][0-9A-Za-z]{0,47}(?:(?:[ \-./_]|\) ?| ?\()[0-9][0-9A-Za-z]{0,47}){0,15}")
_SEPARATORS = re.compile(r"[ \-./()+_]")
_SPACE_GROUPS = re.compile(r"[^ ]+")
#: The widest group a written grouping uses (cards 4, phones up to 5, some ids 6).
_GROUP_WIDTH = 6
_DROP_SEPARATORS = dict.fromkeys(map(ord, " -./()+_"))
_PHONE_GROUPS = re.compile(r"[ \-.()]+")
DROP_DIGITS = dict.fromkeys(map(ord, "0123456789"))
_DROP_PHONE_MARKS = dict.fromkeys(map(ord, " -.()+"))
_LETTERS_BEFORE = 16
_MAX_GROUPS = 8

_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?", re.IGNORECASE)
_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
# A date inside a phone-shaped candidate: only where its fields could be a date and
# it is not part of a longer dotted chain ("01.42.68.53.00" is a French number).
_DATE_SHAPE = re.compile(
    r"(?<![0-9])(?<![0-9][-/.])(?:(?:19|20)[0-9]{2}([-/.])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])([-/.])(?:0?[1-9]|[12][0-9]|3[01])\2(?:[0-9]{4}|[0-9]{2}))"
    r"(?![-/.]?[0-9])"
)
_PHONE_CHARS = re.compile(r"\+?(?:\(?[0-9]+\)?[ \-.]?)+")
# Regions whose national format always starts with the trunk prefix 0, and regions
# whose numbers never start with 0.
_TRUNK_ZERO = frozenset({"GB", "DE", "AT", "CH", "FR", "BE", "NL"})
_NO_TRUNK_ZERO = frozenset({"US", "CA", "ES"})
_AREA_SLASH = re.compile(r"0[0-9]{1,5}/[0-9][0-9 -]{2,12}")
# An extension written straight after the number: "345-899-3560x4587", "...ext12".
_PHONE_EXTENSION = re.compile(r"(?:x|ext)[0-9]{1,5}\Z", re.IGNORECASE)
# The line's label written after a number ("416 60 039 office", "082 490 1693-Fax",
# "+41 58 123 45 67 (mobile)"), as address blocks and e-mail signatures do: the label
# ends its line or its item, so "123 456 789 office hours" is prose, not a label.
_PHONE_LABEL_AFTER = re.compile(
    r"[ \t]?[-(]?[ \t]?(?:office|fax|mobile|mob|cell|tel|phone)\)?[ \t]*(?:[\r\n,;|\\]|\Z)",
    re.IGNORECASE,
)
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_WORD = _ALNUM | {"_"}
_LETTER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

_EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}\Z")
_EMAIL_DOMAIN = re.compile(
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})(?![^\W_]|-)"
)
_URL_USERINFO = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]{0,15}://([^\s/?#@:\"'<>]{1,128}):([^\s/?#@\"'<>]{1,256})@"
)

_HEX_COLON = frozenset("0123456789abcdefABCDEF:")
_V6_TOKEN = re.compile(r"[0-9A-Fa-f:]{2,39}(?:\.[0-9]{1,3}){0,3}")
_MAC_COLON = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_MAC_DASH = re.compile(r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}")
_MAC_DASH_START = re.compile(r"[0-9A-Fa-f]{2}-[0-9A-Fa-f]{2}-")
# Cisco's "0012.3456.789a", found from its middle group: a pattern that starts with a
# literal is a fast search, one that starts with a class is tried at every character.
_MAC_DOTTED_MIDDLE = re.compile(r"\.[0-9A-Fa-f]{4}\.(?=[0-9A-Fa-f]{4})")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Broadcast and all-zero: written in examples and configs, no device's address.
_NO_DEVICE = frozenset({"ffffffffffff", "000000000000"})
# An address with its prefix length ("10.0.0.0/8", "192.168.1.1/32"); the address is found.
_IPV4_CIDR = re.compile(r"((?:[0-9]{1,3}\.){3}[0-9]{1,3})/([0-9]{1,2})")

# A label that makes the number after it something else: "order #0529193", "tracking
# number is 9433". Forwards, the pattern ends where the number starts and is searched
# for at every position before it; the characters before the number are read backwards
# instead, and the pattern spelled backwards is one match at their start. Forwards it
# reads (tests/test_detect_phone.py checks the two agree):
#   (?:(?:order|tracking|invoice|ref|reference|id|ticket|account|acct|po|sku|case|serial
#   |license|licence|passport)
#   (?:[ \t]*(?:no\.?|number|num|nr\.?|#))?(?:[ \t]+(?:is|was|are))?[ \t]*[:#=]?[ \t]*
#   |#[ \t]?)\Z
_ID_LABEL_BACKWARDS = re.compile(
    r"[ \t]?#"
    r"|[ \t]*[:#=]?[ \t]*(?:(?:si|saw|era)[ \t]+)?(?:(?:\.?on|rebmun|mun|\.?rn|#)[ \t]*)?"
    r"(?:redro|gnikcart|eciovni|fer|ecnerefer|di|tekcit|tnuocca|tcca|op|uks|esac|laires"
    r"|esnecil|ecnecil|tropssap)",
    re.IGNORECASE,
)


def _after_id_label(t: str, start: int) -> bool:
    """Whether an id label ends right before ``start`` (within 24 characters)."""
    before = t[max(0, start - 24) : start][::-1]
    return _ID_LABEL_BACKWARDS.match(before) is not None


_PHONE_CONTEXT = (
    "phone",
    "call",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "number",
    "whatsapp",
    "desk",
)
#: Phone words too common in other senses to be evidence on their own ("order number",
#: "text 2", "ring size"): they still let a valid bare number count as a phone number.
_PHONE_WEAK_WORDS = frozenset({"number", "text", "ring"})


def _strong_mix(value: str) -> bool:
    """Keys are random: they mix upper case, lower case and digits."""
    return (
        any(c.isdigit() for c in value)
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
    )


def _always(_: str) -> bool:
    return True


def _strong_mix_or_hex(value: str) -> bool:
    """Keys mix cases and digits, or are lower-case hex (DigitalOcean's, Shopify's)."""
    body = value[value.rindex("_") + 1 :]
    return _strong_mix(body) or (
        any(c.isdigit() for c in body) and all(c in _HEX_DIGITS for c in body)
    )


# What every literal of a secret rule holds, looked for once per text before the rule's
# literals are. A one-character gate is a memchr; prose seldom holds "_" or "J", so most
# texts skip those rules for the price of one. The AWS and Google prefixes all start with
# "A": one search for a capital A followed by one of them replaces five substring scans.
_AWS_OR_GOOGLE_PREFIX = re.compile(r"A(?:KIA|SIA|BIA|CCA|Iza)")
# A Discord bot token: the bot's id in base64 (a snowflake's digits start it with M, N
# or O), a dot, six characters of timestamp, a dot, the HMAC. Looked for only around a
# timestamp between its dots with an id's length before and an HMAC's after
# (`_DISCORD_MIDDLE`, which starts at a dot, so the search skips to each dot): a search
# of the whole pattern over every text cost as much as four other passes, and one for
# the timestamp alone returned at every ".google." of a text full of addresses.
_DISCORD_MIDDLE = re.compile(r"\.(?<=[A-Za-z0-9_-]{23}\.)[A-Za-z0-9_-]{6}\.(?=[A-Za-z0-9_-]{27})")
_DISCORD_BOT_TOKEN = re.compile(
    r"[MNO][A-Za-z0-9_-]{22,26}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}"
)

# Secrets with a recognisable prefix: (gate, literals that must occur, kind, regex,
# validator). Rules that share a gate are tried after one look for it.
_SecretRule = tuple[
    str | re.Pattern[str], tuple[str, ...], str, re.Pattern[str], Callable[[str], bool]
]
_SECRETS: tuple[_SecretRule, ...] = (
    (
        "-",
        ("-----BEGIN",),
        "private_key",
        # A body never holds five dashes, so each BEGIN's scan stops at the next dash run
        # (an END line or the next BEGIN): the scans of all BEGINs cover the text once.
        # A bounded body alone still cost every BEGIN 16 KB when its END was missing.
        re.compile(
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:(?!-----)[A-Za-z0-9+/=\s:,.-]){0,16384}"
            r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----"
        ),
        _always,
    ),
    (
        _AWS_OR_GOOGLE_PREFIX,
        ("AKIA", "ASIA", "ABIA", "ACCA"),
        "aws_access_key",
        # Real key ids are base32 ([A-Z2-7]); keys written in docs, tests and by other
        # tools use any capital or digit, and the prefix alone is distinctive enough.
        re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),
        _always,
    ),
    (
        "_",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        "github_token",
        re.compile(r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"),
        _always,
    ),
    (
        "-",
        ("xox",),
        "slack_token",
        re.compile(r"xox[abposre]-[A-Za-z0-9-]{10,250}"),
        _always,
    ),
    (
        "hooks",
        ("hooks.slack.com",),
        "slack_webhook",
        re.compile(
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/"
            r"T[A-Z0-9]{6,12}/[A-Z0-9]{6,12}/[A-Za-z0-9]{16,40}"
        ),
        _always,
    ),
    (
        "-",
        ("sk-ant-",),
        "anthropic_key",
        re.compile(r"sk-ant-[A-Za-z0-9]{2,12}-[A-Za-z0-9_-]{32,255}"),
        _always,
    ),
    (
        "-",
        ("sk-",),
        "openai_key",
        re.compile(r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,255}"),
        _strong_mix,
    ),
    (
        "_",
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
        "stripe_key",
        re.compile(r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,99}"),
        _always,
    ),
    (
        _AWS_OR_GOOGLE_PREFIX,
        ("AIza",),
        "google_api_key",
        re.compile(r"AIza[0-9A-Za-z_-]{35}"),
        _always,
    ),
    (
        "J",
        ("eyJ",),
        "jwt",
        re.compile(r"eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{4,8192}\.[A-Za-z0-9_-]{0,1024}"),
        v.jwt_valid,
    ),
    # Other providers' tokens, by the prefix each provider documents; kind "secret".
    (
        "hooks",
        ("discord",),
        "secret",
        re.compile(
            r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/"
            r"[A-Za-z0-9_-]{60,68}"
        ),
        _always,
    ),
    # Gated apart from the rules gated on "-": most text holds a dash, and each of these
    # literals would cost it a substring search.
    (
        "gl",
        (
            "glpat-",
            "glrt-",
            "gldt-",
            "glptt-",
            "glcbt-",
            "glimt-",
            "glagent-",
            "gloas-",
            "glsoat-",
            "glft-",
            "glffct-",
        ),
        "secret",
        # GitLab's documented token prefixes (personal, runner, deploy, pipeline trigger,
        # CI/CD job, incoming mail, agent, OAuth secret, service account, feed, feature
        # flag client).
        re.compile(
            r"gl(?:pat|rt|dt|ptt|cbt|imt|agent|oas|soat|ft|ffct)-[A-Za-z0-9_-]{20,255}"
            r"(?:\.[0-9a-z]{2}\.[0-9a-z]{9})?"
        ),
        _always,
    ),
    (
        "gl",
        ("glc_", "glsa_"),
        "secret",
        # Grafana Cloud API tokens and Grafana service account tokens.
        re.compile(r"glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
        _always,
    ),
    (
        "hv",
        ("hvs.", "hvb.", "hvr."),
        "secret",
        # HashiCorp Vault service, batch and recovery tokens.
        re.compile(r"hv[sbr]\.[A-Za-z0-9_-]{24,512}"),
        _strong_mix,
    ),
    # Telegram bot tokens: the bot's id, ":", and 35 characters that start with "AA".
    (":AA", (":AA",), "secret", re.compile(r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}"), _always),
    (
        "sq0",
        ("sq0csp-", "sq0atp-"),
        "secret",
        re.compile(r"sq0(?:csp|atp)-[A-Za-z0-9_-]{22,60}"),
        _always,
    ),
    # Gated on "_" with the other underscore prefixes: one search less for every text.
    ("_", ("AVNS_",), "secret", re.compile(r"AVNS_[A-Za-z0-9_-]{8,64}"), _always),
    # Amazon Bedrock API keys: long-term ("ABSK" + base64 of "BedrockAPIKey-…") and
    # short-term ("bedrock-api-key-" + base64 of "bedrock.amazonaws.com/…").
    (
        "QmVkcm9ja0FQSUtleS",
        ("ABSKQmVkcm9ja0FQSUtleS",),
        "secret",
        re.compile(r"ABSKQmVkcm9ja0FQSUtleS[A-Za-z0-9+/]{20,1000}={0,2}"),
        _always,
    ),
    (
        "bedrock-api-key-",
        ("bedrock-api-key-",),
        "secret",
        re.compile(r"bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/]{0,4000}={0,2}"),
        _always,
    ),
    (
        "-us",
        ("-us",),
        "secret",
        # Mailchimp API keys: 32 hex digits and the data center.
        re.compile(r"[0-9a-f]{32}-us[0-9]{1,2}"),
        _always,
    ),
    ("HRKU-", ("HRKU-",), "secret", re.compile(r"HRKU-[A-Za-z0-9_-]{60}"), _always),
    ("PMAK-", ("PMAK-",), "secret", re.compile(r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"), _always),
    (
        "pypi-",
        ("pypi-",),
        "secret",
        # pypi.org's and test.pypi.org's upload tokens (macaroons naming the index).
        re.compile(r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,1000}"),
        _always,
    ),
    (
        "_",
        (
            "ntn_",
            "secret_",
            "npm_",
            "hf_",
            "_v1_",
            "shpat_",
            "shpca_",
            "shppa_",
            "shpss_",
            "lin_api_",
        ),
        "secret",
        re.compile(
            r"ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43}|npm_[A-Za-z0-9]{36}"
            r"|hf_[A-Za-z0-9]{34}|do[opr]_v1_[a-f0-9]{64}|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"
            r"|lin_api_[A-Za-z0-9]{40}"
        ),
        _strong_mix_or_hex,
    ),
    ("SG.", ("SG.",), "secret", re.compile(r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"), _always),
    (
        "TT3",
        ("ATATT3", "ATCTT3"),
        "secret",
        re.compile(r"AT[AC]TT3[A-Za-z0-9_=-]{24,255}"),
        _strong_mix,
    ),
)

# Generic assignments: a key that names a secret, then = or :, then the value.
# The key is looked for just before each '=' or ':', so text without them costs nothing.
_ASSIGN_SEP = re.compile(r"[=:]")
# The words that name a secret. "password", "passwd", "passphrase" and "pwd" also end a
# longer name ("dbpwd", "newpassword"); the others start at a word's edge ("bypass").
_SECRET_KEY_WORDS = (
    r"(?:password|passwd|passphrase|pwd"
    r"|(?<![a-z0-9])(?:pass|pw"
    r"|(?:client|app|api|aws|shared)?[_-]?secret(?:[_-]?(?:access)?[_-]?key)?"
    r"|api[_-]?key|apikey|(?:shared[_-]?)?access[_-]?key|private[_-]?key"
    r"|(?:access|auth|refresh|bearer|api)[_-]?token|token|credentials?|creds))"
)
# A number may end the name ("api_token_2"). "!" for a comparison ("api_key != ..."),
# whose "=" is the separator found; "?", "??", "." and "+" for the conditional,
# concatenating and appending assignments of Make, PHP and shells ("TOKEN ?= ...").
_KEY_END = (
    r"(?:[_-]?[0-9]{1,4})?[\"']?"
    # A string's type between the name and "=" in Go ("var apiKey string = ...").
    r"(?:[ \t]+(?:string|String|str|\[\]byte))?"
    r"[ \t]{0,4}(?:!|\?\??|\.|\+)?\Z"
)
_ASSIGN_KEY = re.compile("(" + _SECRET_KEY_WORDS + ")" + _KEY_END)
# The same words ending a camelCase name, read in the text as written ("githubToken",
# "stripeSecretKey", "dbPwd"): a capital after a small letter or digit is a word's edge.
_CAMEL_KEY = re.compile(
    r"[a-z0-9](Token|Secret(?:Key)?|Password|Passwd|Passphrase|Pwd|(?:Api|Access|Private)Key"
    r"|Credentials?|Creds)" + _KEY_END
)
# Tokens that are no secret, by the word before "token": a page's place ("NextToken",
# "page_token"), a request's idempotency ("ClientToken", "clientRequestToken"), a lock or
# a change's version ("LockToken", "ChangeToken"), an anti-forgery or a public one.
_PLAIN_TOKEN_BEFORE = re.compile(
    r"(?:public(?:[_-]?key)?|csrf|xsrf|page|next|continuation|pagination|forward|backward|resume|sync"
    r"|cancellation|client|request|idempotency|creation|lock|change|update|verification"
    r"|marker)[_-]?\Z",
    re.IGNORECASE,
)
# A key after a comparison whose value comes first ('if ("..." == password)'); a
# qualified name ("self.password", "cfg.api_key") ends in the key.
_COMPARED_KEY = re.compile(
    r"=?=?[ \t]{0,4}(?:[a-z_][a-z0-9_]*[.])*[a-z0-9_]*?(" + _SECRET_KEY_WORDS + r")(?![a-z0-9_])"
)
# Between a label and its value: spaces, separators, quotes, brackets, table bars, a tag
# ("<td>"), and any other non-word character (Unicode quotes and marks).
_GAP = r"(?:[^\w]|_|<[a-z]{1,5}>){0,6}?"
# The same, not across the end of a sentence ("... was born. 2026-09-28 11:02").
_GAP_IN_SENTENCE = r"(?:[^\w.!?]|_|<[a-z]{1,5}>){0,6}?"
# Brackets may be inside a value ("1g^)Yqnv9"); those around it are trimmed after.
_ASSIGN_VALUE = re.compile(_GAP + r"([^\s\"'`,;<>|=:][^\s\"'`,;<>|]{5,255})")
# A type annotation, "=" and an opening quote: a class attribute or parameter whose
# default is a literal ('password: str = "…"', 'api_key: Optional[str] = "…"').
_ANNOTATED_LITERAL = re.compile(
    r"[ \t]*[A-Za-z_][\w.]*(?:\[[\w., |\[\]]*\])?(?:[ \t]*\|[ \t]*[A-Za-z_][\w.]*)*"
    r"[ \t]*=[ \t]*[\"'](?=[^\"'\n])"
)
# A quote opening right after the operator: the value is what it quotes (see `_quoted`).
_QUOTE_AFTER = re.compile(r"[ \t]{0,4}@?[\"'`](?=[^\"'`\n])")
# "my password is ...", "the API key was ...": a value named in a sentence.
_PHRASE = re.compile(
    r"(?<![a-z0-9])(pass(?:word|wd|phrase|code)?|pwd|api[ _-]?key|secret(?:[ _-]key)?"
    r"|(?:api[ _-]?)?token)[ \t]+(?:is|was|will be|would be)[ \t]*:?(?=[ \t])"
)
# An HTTP credential: after "Bearer", or after "Authorization: Basic".
# The credential of an HTTP Authorization header: after Bearer, after Basic, Token or
# Api-Token, or right after the header's name ("Authorization: 5eb4223e-…").
_BEARER = re.compile(
    r"(?<![a-z0-9])(?:bearer(?:[^\w]|_|<[a-z]{1,5}>){1,6}?"
    # The header's name, its ":" (or a query's "="), and a scheme before the credential.
    r"|authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:basic|token|api-token)[^\w]{1,4})?)"
    r"(?![_-]*(?:bearer|basic|token|api-token)(?![a-z0-9]))([a-z0-9._~+/@=-]{8,4096})"
)
# curl's credentials (-u / --user user:password), quoted, bare, or the password alone
# quoted ("kevin:'pRf7…'"); an API key passed as the user has an empty password.
_CURL_USER = re.compile(
    r"(?:^|[ \t\n])(?:-u|--user)(?:=|[ \t]{1,5})"
    r"(?:\"([^\"\n]{1,256})\"|'([^'\n]{1,256})'|([^\s\"']{1,256}(?:'[^'\n]{1,256}'|\"[^\"\n]{1,256}\")?))"
)
_PLACEHOLDER = re.compile(
    r"\$\{|\$\(|\{\{|%\(|%[sd](?![A-Za-z0-9])|<[A-Za-z][A-Za-z0-9_ -]*>|\*{3,}|x{4,}|\.\.\."
    # A shell's or an environment's variable standing for the value ("$API_KEY", "$2"),
    # named in one case ("$CvHDo2xL8" is a password).
    r"|\$(?-i:[A-Z_][A-Z0-9_]*|[a-z_][a-z0-9_]*|[0-9])\Z"
    # A format field ("{token}", f"{password!r}"): the template, not its value.
    r"|\{[A-Za-z_][A-Za-z0-9_.]*(?:![rsa])?(?::[^{}]*)?\}"
    r"|(?:none|null|nil|true|false|required|optional|string|redacted|changeme|undefined|your[_-].*|example.*)\Z",
    re.IGNORECASE,
)
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}\Z")
# 64 bytes in base64: 86 characters before "==".
_KEY64_BODY = 86
_KEY64 = re.compile(r"[A-Za-z0-9+/]{86}")
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_B64_EDGE_AFTER = _B64_CHARS | {"="}
# "AccountKey=", "<account_key>", "-storagekey ", '"SharedAccessKey": ' ...
_KEY_NAMED = re.compile(r"(?i:key)(?![a-z])")
_PUBLIC_KEY = re.compile(r"(?i:public[ _-]?key|ssh-(?:rsa|dss|ed25519))")

_BIC = re.compile(
    r"(?<![A-Za-z0-9])(?:bic|swift)(?:[ /_-]?code)?"
    + _GAP
    + r"([A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)(?![A-Za-z0-9])",
    re.IGNORECASE,
)

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DOB = re.compile(
    r"(?<![a-z])(?:date[ \t_]of[ \t_]birth|birth[ \t_]?date|birthday|d\.?o\.?b\.?"
    r"|born(?:[ \t_]on)?)" + _GAP_IN_SENTENCE + r"(?:is[ \t]+)?"
    r"(?:(?P<y1>[0-9]{4})-(?P<m1>[0-9]{1,2})-(?P<d1>[0-9]{1,2})"
    r"|(?P<a2>[0-9]{1,2})[/.](?P<b2>[0-9]{1,2})[/.](?P<y2>[0-9]{4}|[0-9]{2})"
    r"|(?P<d3>[0-9]{1,2})(?:st|nd|rd|th)?[ \t]+(?P<m3>" + _MONTH + r"),?[ \t]+(?P<y3>[0-9]{4})"
    r"|(?P<m4>" + _MONTH + r")[ \t]+(?P<d4>[0-9]{1,2})(?:st|nd|rd|th)?,?[ \t]+(?P<y4>[0-9]{4}))"
    r"(?![0-9])",
    re.IGNORECASE,
)
# A passport's number after its label: six to nine letters and digits, two digits at
# least (US and UK numbers are nine digits, most others a letter or two and digits:
# "C01X00T47", "12AB34567", "A1234567"). No check digit exists outside the machine-
# readable zone, so the label is what makes it one; the first word after it is read.
_PASSPORT_WORDS = ("passport", "reisepass", "passeport", "pasaporte", "passaport", "paspoort")
_PASSPORT = re.compile(
    r"(?i:passports?|reisepass|passeports?|pasaportes?|passaport[oi]|paspoorten?)"
    r"(?i:[ \t_-]*(?:no\.?|number|num|nr\.?|nummer|numéro|numero|número|#))?"
    r"(?i:[ \t]+(?:is|was|ist|est|es|è))?"
    f"{_GAP_IN_SENTENCE}([A-Za-z0-9]{{6,9}})(?![A-Za-z0-9])"
)
# More numbers listed after the first: "Passports: C01X00T41 and F2N3P4M53".
_PASSPORT_MORE = re.compile(
    r"[ \t]*(?:,|;|/|&|(?i:and|or|und|oder|et|ou|y|o|e|en|of))[ \t]+([A-Za-z0-9]{6,9})"
    r"(?![A-Za-z0-9])"
)
# The number named before the word: "A12803456 is my passport", "AAA123456 es mi número
# de pasaporte" (matched against the characters before the word, to their end).
_PASSPORT_NAMED_BEFORE = re.compile(
    r"(?<![A-Za-z0-9])([A-Za-z0-9]{6,9})[ \t]+(?i:is|was|es|est|ist|è)[ \t]+"
    r"(?i:(?:my|mi|mon|ma|mein|meine|il[ \t]+mio|the|our|his|her|their|su|son|sa)[ \t]+)?"
    r"(?i:(?:número|numero|numéro|nummer)[ \t]+(?:de[ \t]+|di[ \t]+|del[ \t]+|des[ \t]+)?)?\Z"
)
# Numbers no shape, checksum or issuing rule tells apart from an order or ticket number
# (HIPAA's Safe Harbor lists all three): a driver's licence, a medical record and an
# account number are known by the label written right before them, in the languages of
# the built-in locale packs. Matched only at a run of digits no other kind took, against
# the characters before it, to their end: text without such runs never runs it.
# "Account" alone is not a label ("my account ACC-1234"); with a word for number, or a
# bank's kind of account before it, it is.
_LABEL_NAMES = (
    r"(?:(?P<driver_license>driv(?:er'?s?|ing)[ \t_-]*licen[cs]es?|(?<![A-Za-z0-9])(?-i:DL)"
    r"|f(?:ü|ue)hrerschein|permis[ \t_-]+de[ \t_-]+conduire"
    r"|(?:licencia|permiso|carn[eé]t?)[ \t_-]+de[ \t_-]+conducir)"
    r"(?:[ \t_-]*(?:number|no\.?|num|nr\.?|nummer|numéro|número|#|id))?"
    r"|(?P<medical_record_number>(?:(?:medical|health)[ \t_-]*records?"
    r"|patient(?:en)?[ \t_-]*(?:record|chart|file|akte))"
    r"(?:[ \t_-]*(?:number|no\.?|num|nr\.?|nummer|#|id))?"
    r"|(?<![A-Za-z0-9])(?:MRN|EHR[ \t_-]*(?:id|no\.?|number|#))"
    r"|patient(?:en)?[ \t_-]*(?:id|number|no\.?|nummer|#)"
    r"|dossier[ \t_-]+(?:m[ée]dical|patient)|historia[ \t_-]+cl[ií]nica)"
    r"|(?P<account_number>(?:(?:bank|checking|savings|current|deposit)[ \t_-]*account"
    r"|bankkonto|compte[ \t_-]+bancaire|cuenta[ \t_-]+bancaria)"
    r"(?:[ \t_-]*(?:number|no\.?|num|nr\.?|#))?"
    r"|(?:account|acct\.?)[ \t_-]*(?:number|no\.?|num|nr\.?|#)"
    r"|konto[ \t_-]*(?:nummer|nr\.?)|kontonummer"
    r"|num[ée]ro[ \t_-]+de[ \t_-]+compte|n[uú]mero[ \t_-]+de[ \t_-]+cuenta))"
)
#: The verbs between a number and the label naming it, either way round ("MRN is ...",
#: "... is my MRN"); the stream hold (`aiguard.doors.streaming`) waits on the same ones.
NAMING_VERBS = ("is", "was", "ist", "est", "es", "è")
_NAMING_VERB = "(?:" + "|".join(NAMING_VERBS) + ")"
_LABELLED_ID = re.compile(
    _LABEL_NAMES + r"(?:[ \t]+" + _NAMING_VERB + r")?(?:[^\w.!?]|_|<[a-z]{1,5}>){0,6}\Z",
    re.IGNORECASE,
)
# The number named after it, as people write it when they give it first: "S99966334 is
# my licence number", "00123456 is the patient's MRN", "12345678 es mi número de cuenta".
# "DL" after a number names a queue, a list or a download as often as a licence.
_LABEL_NAMES_AFTER = _LABEL_NAMES.replace(r"|(?<![A-Za-z0-9])(?-i:DL)", "", 1)
_LABELLED_AFTER = re.compile(
    r"[ \t]+"
    + _NAMING_VERB
    + r"[ \t]+(?:(?:my|mi|mon|ma|mein|meine|il[ \t]+mio|la[ \t]+mia|the|our|his|her|their"
    r"|su|son|sa|the[ \t]+patient'?s|this[ \t]+patient'?s)[ \t]+)?"
    + _LABEL_NAMES_AFTER
    + r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_LABELLED_KINDS = frozenset({"driver_license", "medical_record_number", "account_number"})
#: The words that name the kind in a label of `_LABELLED_ID`, and the words that may
#: follow them before the value ("number", "is"). Reading the words before a number
#: back to a kind's word is a few set lookups; most numbers no other kind took ("order
#: no. 1234", "costs 120") are turned away by them before the pattern is searched for.
_LABEL_HEADS = frozenset(
    {
        "license", "licence", "licenses", "licences", "dl", "führerschein",
        "fuehrerschein", "conduire", "conducir", "record", "records", "chart", "file",
        "akte", "mrn", "ehr", "médical", "medical", "patient", "patienten", "clínica",
        "clinica", "account", "acct", "konto", "kontonummer", "bankkonto", "compte",
        "bancaire", "cuenta", "bancaria",
    }
)  # fmt: skip
#: The first two characters of the verbs `_LABELLED_AFTER` starts with ("è" and a blank).
_VERB_STARTS = frozenset((verb + " ")[:2] for verb in NAMING_VERBS)
_LABEL_FILLERS = frozenset(
    {
        "number", "no", "num", "nr", "nummer", "numéro", "número", "numero", "id", "is",
        "was", "ist", "est", "es", "è",
    }
)  # fmt: skip

# Not across a sentence's end ("the computer age. 1Z..."), and not a number glued to a
# word ("age 1ZJ827..." is a code); "30y", "30yo", "30yrs" are ages.
_AGE_BEFORE = re.compile(
    r"aged?(?:[ \t]+of)?(?:[^\w.!?]|_|<[a-z]{1,5}>){0,4}([0-9]{1,3})(?![0-9])(?!(?!y)[a-z])"
)
# "42 years old", "42-year-old", "42 y/o" (as clinical notes write it).
_AGE_AFTER = re.compile(r"(?:(?:years?|yrs?)[ \t-]old|y/o)(?![a-z])")
_AGE_NUMBER = re.compile(r"(?<![0-9])([0-9]{1,3})[ \t-]?\Z")
# "I just turned 47.", "I'll turn 23 next week", "written when he was 78.": a short
# number after "turn(ed)" or a person and a verb of being, that ends its sentence or is
# followed by a word of time ("in turn 5, ..." and "she was 5 minutes late" are not).
# Matched at short runs of digits only, against the characters before each.
_AGE_VERB_BEFORE = re.compile(
    # "turn" the noun ("in turn 3", "on the first turn 2") is after a preposition or article.
    r"(?:(?<![a-z])(?<!\bin )(?<!\bon )(?<!the )(?<!\bmy )(?<!per )(?<!each )(?<!your )"
    r"turn(?:ed|s|ing)?|(?<![a-z'])(?:(?:i|he|she|patient|pt)[ \t]+(?:was|is|am)"
    r"|i['\u2019]m|s?he['\u2019]s))[ \t]+\Z",
    re.IGNORECASE,
)
_AGE_VERB_AFTER = re.compile(
    r"[ \t]*(?:[.!?\r\n]|\Z|(?:years?|yrs?|this|next|today|tomorrow|soon|later|yesterday|last)"
    r"(?![a-z]))",
    re.IGNORECASE,
)
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


Raw = tuple[int, int, str, float]


def _kind_named_before(t: str, start: int) -> str | None:
    """The kind a label right before ``start`` names (`_LABELLED_ID`), or None."""
    # Back over the words before the value to a word naming a kind, past marks and
    # tags ("MRN: <td>") and the words that may follow it ("account number is").
    i, stop = start, max(0, start - 48)
    for _ in range(3):
        while i > stop:
            c = t[i - 1]
            if c.isalnum():
                break
            if c == ">":
                opening = t.rfind("<", stop, i)
                i = opening if opening != -1 else i - 1
            else:
                i -= 1
        j = i
        while j > stop and t[j - 1].isalpha():
            j -= 1
        word = t[j:i].lower()
        if word in _LABEL_HEADS:
            break
        if word not in _LABEL_FILLERS:
            return None
        i = j
    else:
        return None
    m = _LABELLED_ID.search(t, max(0, start - 48), start)
    return None if m is None else m.lastgroup


def _kind_named_after(t: str, end: int) -> str | None:
    """The kind a sentence right after ``end`` names it ("... is my MRN"), or None."""
    # A verb after one space first: most numbers are followed by something else.
    if t[end : end + 1] not in (" ", "\t") or t[end + 1 : end + 3].lower() not in _VERB_STARTS:
        return None
    m = _LABELLED_AFTER.match(t, end)
    return None if m is None else m.lastgroup


class BuiltinDetector:
    """The built-in detector for a set of kinds and locales (see the module docstring).

    Build it with :func:`aiguard.classify.builtin_detector`; instances are immutable
    and safe to share between threads.
    """

    __slots__ = (
        "_ages",
        "_dash_check_letter",
        "_ids_by_length",
        "_kinds",
        "_labelled_kinds",
        "_letter_ids",
        "_levels",
        "_phone_evidence",
        "_phone_re",
        "_phone_regions",
        "_phone_regions_plain",
        "_phone_regions_zero",
        "_secret_groups",
        "_secret_literals",
        "_secret_pattern_groups",
        "_secrets",
        "name",
    )

    def __init__(
        self,
        kinds: Iterable[str] | None = None,
        locales: Iterable[str] | None = None,
        levels: Mapping[str, Level | str] | None = None,
        name: str = "pattern",
    ) -> None:
        packs: tuple[LocalePack, ...] = locale_packs(locales)
        specs: list[IdSpec] = list(GLOBAL_IDS)
        for pack in packs:
            specs.extend(pack.ids)
        known = set(DEFAULT_LEVELS) | {spec.kind for spec in specs}
        if kinds is None:
            wanted = known
        else:
            wanted = set(kinds)
            unknown = wanted - known
            if unknown:
                raise ValueError(
                    f"unknown kinds {sorted(unknown)}; built-in kinds are {sorted(known)}"
                )
        self._kinds = frozenset(wanted)
        self._labelled_kinds = bool(self._kinds & _LABELLED_KINDS)
        self._ages = "age" in self._kinds
        resolved = dict(DEFAULT_LEVELS)
        for spec in specs:
            resolved.setdefault(spec.kind, spec.level)
        for kind, level in (levels or {}).items():
            resolved[kind] = Level.parse(level)
        self._levels = resolved
        by_length: dict[int, list[IdSpec]] = {}
        letter_ids: dict[int, list[IdSpec]] = {}
        for spec in specs:
            if spec.kind not in wanted:
                continue
            if spec.letters:
                letter_ids.setdefault(spec.letters, []).append(spec)
            else:
                for length in spec.lengths:
                    by_length.setdefault(length, []).append(spec)
        self._ids_by_length = {k: tuple(s) for k, s in by_length.items()}
        self._letter_ids = {k: tuple(s) for k, s in letter_ids.items()}
        # Ids whose shape lets a dash stand before their check letter ("55555555-K"):
        # only then is a letter glued to a number by a dash read as part of it.
        self._dash_check_letter = any(
            spec.kind in wanted and spec.shape.endswith("-?[A-Z]") for spec in specs
        )
        regions: list[str] = []
        words: list[str] = list(_PHONE_CONTEXT)
        for pack in packs:
            regions.extend(r for r in pack.phone_regions if r not in regions)
            words.extend(w for w in pack.phone_words if w not in words)
        self._phone_regions = tuple(regions) or ("US",)
        self._phone_regions_zero = (
            tuple(r for r in self._phone_regions if r not in _NO_TRUNK_ZERO) or self._phone_regions
        )
        self._phone_regions_plain = (
            tuple(r for r in self._phone_regions if r not in _TRUNK_ZERO) or self._phone_regions
        )
        alternation = "|".join(re.escape(w) for w in words)
        self._phone_re = re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])")
        strong = "|".join(re.escape(w) for w in words if w not in _PHONE_WEAK_WORDS)
        self._phone_evidence = re.compile(rf"(?<![a-z0-9])(?:{strong})(?![a-z0-9])")
        self._secrets = tuple(rule for rule in _SECRETS if rule[2] in wanted)
        self._secret_literals = tuple(lit for rule in self._secrets for lit in rule[1])
        groups: dict[str | re.Pattern[str], list[_SecretRule]] = {}
        for rule in self._secrets:
            groups.setdefault(rule[0], []).append(rule)
        # Literal gates apart from pattern gates: one `in` each, without a type test.
        self._secret_groups = tuple(
            (gate, tuple(rules)) for gate, rules in groups.items() if isinstance(gate, str)
        )
        self._secret_pattern_groups = tuple(
            (gate, tuple(rules)) for gate, rules in groups.items() if not isinstance(gate, str)
        )
        self.name = name

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds this detector reports."""
        return self._kinds

    def level_of(self, kind: str) -> Level:
        """The level this detector gives ``kind``."""
        return self._levels[kind]

    # -- the passes ------------------------------------------------------------------

    def detect(self, text: str) -> list[Finding]:
        """Findings in ``text``, possibly overlapping (``merge_findings`` resolves them)."""
        if not text:
            return []
        # All-ASCII text (most messages) needs no folding and no offset map.
        folded = None if text.isascii() else normalize(text)
        t = folded.text if folded is not None else text.replace("\t", " ")
        raw: list[Raw] = []
        kinds = self._kinds
        has_digit = self._scan_digits(t, raw)
        if "@" in t:
            self._scan_at(t, raw)
        if self._secret_groups or self._secret_pattern_groups:
            self._scan_secrets(t, raw)
        if "==" in t and "secret" in kinds:
            self._account_keys(t, raw)
        if "." in t and "secret" in kinds:
            self._discord_tokens(t, raw)
        if ":" in t and ("ip_address" in kinds or "mac_address" in kinds):
            self._scan_colons(t, raw)
        if "mac_address" in kinds and t.count("-") >= 5:
            for m in _MAC_DASH.finditer(t):
                s, e = m.span()
                if (
                    _bounded_or_emphasis(t, s, e)
                    and not ((s and t[s - 1] == "-") or (e < len(t) and t[e] == "-"))
                    and m.group().replace("-", "").lower() not in _NO_DEVICE
                ):
                    raw.append((s, e, "mac_address", 0.9))
        if "mac_address" in kinds and t.count(".") >= 2:
            self._scan_dotted_macs(t, raw)
        self._scan_words(t, raw, has_digit)
        if not raw:
            return []
        levels = self._levels
        name = self.name
        if folded is None or not folded.removed_at:
            return [
                Finding(s, e, kind, levels[kind], name, score)
                for s, e, kind, score in raw
                if kind in kinds
            ]
        return [
            Finding(folded.start(s), folded.end(e, text), kind, levels[kind], name, score)
            for s, e, kind, score in raw
            if kind in kinds
        ]

    def _context(self, t: str, start: int, regex: re.Pattern[str] | None) -> int:
        """Characters between the nearest label word before ``start`` and it (_FAR if none).

        A label names the first value after it: one with digits in between does not count.
        """
        if regex is None:
            return _FAR
        window, pos = _words_before(t, start, 40)
        ends = [m.end() for m in regex.finditer(window, pos)]
        if not ends or any(c.isdigit() for c in window[ends[-1] :]):
            return _FAR
        return len(window) - ends[-1]

    def _scan_digits(self, t: str, raw: list[Raw]) -> bool:
        """Digit-anchored values into ``raw``; whether ``t`` holds a digit at all."""
        skip_until = 0
        n = len(t)
        pos = 0
        # Every run starts at a digit, and re's search tests each character against [0-9]
        # in turn: about 30 instructions a character, the pass's largest cost on prose.
        # In ASCII text with every digit written as "0" (bytes.translate, a table lookup
        # a character) the next digit is a memchr away, and the run is matched there.
        digits = t.encode("ascii").translate(DIGITS_AS_ZERO) if t.isascii() else None
        while True:
            if digits is not None:
                i = digits.find(b"0", pos)
                if i == -1:
                    return pos > 0
                m = _CHUNK.match(t, i)
            else:
                m = _CHUNK.search(t, pos)
            if m is None:
                return pos > 0
            s, e = m.span()
            pos = e
            if s < skip_until:
                continue  # inside a value already found
            if e - s < 5:
                # Too short for any kind, unless it is an IBAN's "GB82" before letter groups
                # or an age a sentence gives ("I just turned 47.").
                if s >= 2 and t[s - 1].isalpha() and t[s - 2].isalpha():
                    skip_until = self._short_iban(t, s - 2, raw)
                elif e - s <= 3 and s >= 4 and t[s - 1] in " \t" and self._ages:
                    self._age_after_verb(t, s, e, raw)
                continue
            # Letters glued in front: "DE89...", "ABCPE1234F", "RSSMRA85...".
            ls = s
            while ls > 0 and s - ls < _LETTERS_BEFORE and t[ls - 1] in _LETTER:
                ls -= 1
            before = t[ls - 1] if ls > 0 else " "
            if before == "_" and (ls < 2 or t[ls - 2] not in _ALNUM):
                before = " "  # Markdown emphasis "_value_", not an identifier
            space = t.find(" ", s, e)
            if before in _WORD or (before in "-." and ls > 1 and t[ls - 2] in _ALNUM):
                # A fragment of a longer token (hash, uuid, identifier); what follows
                # a space in the same run is looked at on its own.
                if space != -1:
                    pos = space + 1
                continue
            after = t[e] if e < n else " "
            if (
                after == "-"
                and self._dash_check_letter
                and e + 1 < n
                and t[e + 1] in _LETTER
                and (e + 2 == n or t[e + 2] not in _WORD)
                and 7 <= e - s <= 8
                and t[s:e].isdigit()
            ):
                # "55555555-K", "Y8063915-Z": a Spanish id's check letter after a dash.
                e += 2
                after = t[e] if e < n else " "
            if after == "_" and (e + 1 >= n or t[e + 1] not in _ALNUM):
                after = " "
            if after in "_@" or (
                after in "-."
                and e + 1 < n
                and t[e + 1] in _ALNUM
                and not (after == "-" and _PHONE_LABEL_AFTER.match(t, e))
            ):
                last_space = t.rfind(" ", s, e)
                if last_space == -1:
                    continue
                e = last_space  # the last group is glued to something else: drop it
            if ls < s:
                end = self._letter_id(t, ls, s, e, raw)
                if not end and self._labelled_kinds:
                    end = self._labelled(t, ls, e, raw)
                if end:
                    skip_until = end
                elif space != -1:
                    pos = space + 1
                continue
            # "(415) 555-0132" starts at its bracket; "(303-48-6926)" is only inside one.
            start = s - 1 if before == "+" or (before == "(" and t.find(")", s, e) != -1) else s
            if self._classify(t, start, e, raw):
                continue
            if e - s <= 9 and self._spaced_nino(t, s, e, raw):
                continue
            if self._labelled_kinds and (end := self._labelled(t, s, e, raw)):
                pos = skip_until = end
                continue
            # Several values (or a value and a number) in one run: try prefixes, then suffixes.
            if " " in t[s:e]:
                self._sub_spans(t, start, e, raw)

    def _age_after_verb(self, t: str, s: int, e: int, raw: list[Raw]) -> None:
        if (
            _AGE_VERB_BEFORE.search(t, max(0, s - 16), s) is not None
            and _AGE_VERB_AFTER.match(t, e) is not None
            and t[s:e].isdigit()
            and int(t[s:e]) <= 120
        ):
            raw.append((s, e, "age", 0.8))

    def _labelled(self, t: str, start: int, end: int, raw: list[Raw]) -> int:
        """A number no other kind took, named by the label right before it: its end, or 0.

        A run of space-apart groups is one number when its groups are short (a grouping,
        "12 3456 789"); otherwise the number is its first group ("MRN 40021934 2 visits").
        """
        # The value's own checks first (string methods in C), then the last word before
        # it, and only then the label pattern: most numbers here fail one of the first two.
        space = t.find(" ", start, end)
        if space - start >= 5:
            end = space
        compact = t[start:end].replace(" ", "").replace("-", "")
        # Dots and slashes write dates, versions and amounts ("DL 2024.01", "12/2031").
        if not 5 <= len(compact) <= 20 or not compact.isalnum():
            return 0
        if len(compact) - len(compact.translate(DROP_DIGITS)) < 4:
            return 0
        kind = _kind_named_before(t, start) or _kind_named_after(t, end)
        if kind is None or kind not in self._kinds:
            return 0
        raw.append((start, end, kind, 0.9))
        return end

    def _letter_id(self, t: str, ls: int, s: int, e: int, raw: list[Raw]) -> int:
        letters = s - ls
        if letters == 2:
            end = self._short_iban(t, ls, raw)
            if end:
                return end
        specs = self._letter_ids.get(letters)
        if specs:
            token = t[ls:e]
            end = e
            # "AB 12 34 56 C": a lone check letter after a space
            if (
                e + 2 <= len(t)
                and t[e] == " "
                and t[e + 1].isalpha()
                and (e + 2 == len(t) or t[e + 2] not in _WORD)
            ):
                token, end = t[ls : e + 2], e + 2
            candidates = [(t[ls:e], e), (token, end)]
            space = t.find(" ", s, e)
            if space != -1:  # "WT971058A 929-..." : an id followed by another number
                candidates.append((t[ls:space], space))
            for candidate, cend in candidates:
                if self._try_specs(t, ls, cend, candidate, specs, raw):
                    return cend
        return 0

    def _short_iban(self, t: str, ls: int, raw: list[Raw]) -> int:
        """An IBAN starting at ``ls``: its end, or 0. Shaped but invalid ones are skipped too.

        The groups are read one by one and the candidate ends tried longest first, so a
        word after the value ("AT35... thanks") is never taken for its last group.
        """
        if "iban" not in self._kinds:
            return 0
        if ls > 0 and t[ls - 1] in _WORD and not (t[ls - 1] == "_" and _edge(t, ls - 1)):
            return 0
        head = t[ls : ls + 4]
        if len(head) < 4 or not (head[2:].isdigit() and head[:2].isalpha()):
            return 0
        length = v.iban_length(head[:2].upper())
        if length is None:
            return 0
        n = len(t)
        pos = ls + 4
        compact = head.upper()
        # Groups apart by spaces, as the standard prints them, or by dashes; not both.
        sep = t[pos] if pos < n and t[pos] in " -" else " "
        while len(compact) < length:
            gs = pos + 1 if pos < n and t[pos] == sep else pos
            ge = gs
            while ge < n and ge - gs < 4 and t[ge] in _ALNUM:
                ge += 1
            if ge == gs:
                break
            compact += t[gs:ge].upper()
            pos = ge
            if ge - gs < 4:
                break  # only the last group is short
        if len(compact) != length or (pos < n and t[pos] in _ALNUM):
            return 0
        if v.iban_valid(compact):
            raw.append((ls, pos, "iban", 0.99))
        elif self._evidence(t, ls, _IBAN_EVIDENCE):
            raw.append((ls, pos, "iban", EVIDENCE_SCORE))
        # Shaped like an IBAN either way: its groups are not phone numbers or ids.
        return pos

    def _try_specs(
        self,
        t: str,
        start: int,
        end: int,
        token: str,
        specs: Iterable[IdSpec],
        raw: list[Raw],
        bare: bool = False,
    ) -> bool:
        compact: str | None = None
        best: tuple[bool, float, int, IdSpec] | None = None
        for spec in specs:
            if spec.compiled.fullmatch(token) is None:
                continue
            score = spec.bare_score if bare and spec.bare_score is not None else spec.score
            if score < MIN_SCORE and self._context(t, start, spec.context_re) == _FAR:
                # It needs a word of its kind either way (valid or as evidence, whose
                # words are among these): with none near, skip the checksum.
                continue
            if compact is None:
                compact = _SEPARATORS.sub("", token).upper()
            distance = _FAR
            if spec.validate(compact):
                # Ids with letters are written in capitals; lower-case letters without a
                # word of the kind nearby are prose ("ok 875769b"), not an id.
                lowered = token != token.upper()
                if lowered or score < spec.context_score:
                    distance = self._context(t, start, spec.context_re)
                    if distance < _FAR:
                        score = spec.context_score
                    elif lowered:
                        continue
            else:
                # Evidence: the right shape next to a word of its kind is that kind even
                # when a checksum or an issuance rule fails (a typo, a test value).
                distance = self._context(t, start, spec.evidence_re)
                if distance == _FAR or _sentence_end(t, start - distance, start):
                    continue
                score = EVIDENCE_SCORE
            # Several ids can share a shape (nine digits: SSN, ITIN, routing, BSN): one
            # with its label nearby wins, then the more certain, then the nearer label.
            rank = (distance < _FAR, score, -distance)
            if score >= MIN_SCORE and (best is None or rank > (best[0], best[1], -best[2])):
                best = (distance < _FAR, score, distance, spec)
        if best is None:
            return False
        raw.append((start, end, best[3].kind, best[1]))
        return True

    def _evidence(self, t: str, start: int, regex: re.Pattern[str]) -> bool:
        distance = self._context(t, start, regex)
        return distance < _FAR and not _sentence_end(t, start - distance, start)

    def _classify(self, t: str, start: int, end: int, raw: list[Raw]) -> bool:
        token = t[start:end]
        compact_len = len(token.translate(_DROP_SEPARATORS))
        bare = compact_len == end - start
        if "." in token and _IPV4.fullmatch(token) is not None:
            if "ip_address" in self._kinds and v.ip_valid(token) and not _version_like(t, start):
                raw.append((start, end, "ip_address", 0.9))
                return True
            return False
        if "/" in token and (cidr := _IPV4_CIDR.fullmatch(token)) is not None:
            address = cidr.group(1)
            if (
                "ip_address" in self._kinds
                and int(cidr.group(2)) <= 32
                and v.ip_valid(address)
                and not _version_like(t, start)
            ):
                raw.append((start, start + len(address), "ip_address", 0.9))
                return True
            return False
        specs = self._ids_by_length.get(compact_len)
        if specs and self._try_specs(t, start, end, token, specs, raw, bare):
            return True
        if "phone" in self._kinds and 7 <= compact_len <= 15:
            if not self._phone(t, start, end, token, bare, raw):
                return False  # the caller tries a label next
            # A label names the number whatever else its digits could dial: "MRN 40021934".
            if self._labelled_kinds and token[0] not in "+(":
                phone = raw.pop()
                if not self._labelled(t, start, end, raw):
                    raw.append(phone)
            return True
        if "phone" in self._kinds and compact_len > 15 and _PHONE_EXTENSION.search(token):
            return self._phone(t, start, end, token, False, raw)
        return False

    def _phone(self, t: str, start: int, end: int, token: str, bare: bool, raw: list[Raw]) -> bool:
        # The number is checked without its extension; the finding covers both.
        ext = _PHONE_EXTENSION.search(token) if "x" in token or "X" in token else None
        if ext is not None:
            token = token[: ext.start()]
            bare = bare and token.isdigit()
            if sum(ch.isdigit() for ch in token) < 7:
                return False  # "123x4567" is a size or a code, not 123 with an extension
        if not token[-1].isdigit():
            return False
        if "/" in token:
            # "030/901820": a trunk-prefixed area code and a slash, as in DE, AT and CH.
            if _AREA_SLASH.fullmatch(token) is None:
                return False
            token = token.replace("/", " ")
        if _PHONE_CHARS.fullmatch(token) is None:
            return False
        plus = token[0] == "+"
        if _MAC_DASH.fullmatch(token) is not None:
            return False  # six pairs of digits with dashes: a MAC address
        if _DATE_SHAPE.search(token) is not None:
            return False  # a date, or part of a timestamp "16 2024-01-05 10"
        context = False
        if _after_id_label(t, start):
            return False  # "order #0529193", "tracking 943363709257"
        if bare and not plus:
            # Order numbers are bare digits too: only a phone word makes them a number.
            context = _PHONE_LABEL_AFTER.match(t, end) is not None or (
                self._phone_re.search(*_words_before(t, start, 30)) is not None
            )
            if not context:
                return False
        groups = [g for g in _PHONE_GROUPS.split(token.lstrip("+")) if g]
        if len(groups) > 6 or (len(groups) > 1 and max(len(g) for g in groups) > 8):
            return False
        if not plus and token.count(".") and len(groups) == 4:
            return False  # dotted quads are addresses or versions
        lengths = [len(g) for g in groups]
        if lengths == [3, 2, 4] or (lengths.count(4) >= 3 and not plus):
            return False  # the SSN shape whatever its ranges; card and tracking groupings
        if len(groups) == 2 and "." in token:
            return False  # a decimal number or a coordinate
        regions: tuple[str | None, ...]
        if plus:
            regions = (None,)
        else:
            # A national number starting with 0 is a trunk prefix (GB, DE, FR, ...); one
            # without cannot be from those, and NANP and Spanish numbers never start with
            # 0. Each region tried costs a phonenumbers parse and validation.
            zero = token.lstrip("(")[:1] == "0"
            regions = self._phone_regions_zero if zero else self._phone_regions_plain
        # "+41 (0)69 ...": the bracketed trunk 0 is dialled only within the country.
        dialled = token.replace("(0)", "", 1) if plus else token
        digits = dialled.translate(_DROP_PHONE_MARKS)
        if not digits.isdigit():
            return False
        for region in regions:
            if v.valid_phone(digits, plus, region):
                if not context and not plus:
                    context = _PHONE_LABEL_AFTER.match(t, end) is not None or (
                        self._phone_re.search(*_words_before(t, start, 30)) is not None
                    )
                score = 0.99 if plus or context else 0.9
                raw.append((start, end, "phone", score))
                return True
        # Evidence: a number shaped like a phone number right after a phone word ("call
        # me at", "Tel.", "mobile:") is one even when no numbering plan has it (a typo, a
        # made-up test number); the shape checks above have already ruled out dates,
        # SSNs, card groupings, decimals and numbers after an id label.
        # A label after the number is evidence only for an item of its own, as in an
        # address block or a signature ("\n416 60 039 office"), not mid-sentence.
        if (_starts_item(t, start) and _PHONE_LABEL_AFTER.match(t, end)) or self._evidence(
            t, start, self._phone_evidence
        ):
            raw.append((start, end, "phone", EVIDENCE_SCORE))
            return True
        return False

    def _spaced_nino(self, t: str, s: int, e: int, raw: list[Raw]) -> bool:
        if (
            s < 3
            or t[s - 1] != " "
            or not t[s - 3 : s - 1].isalpha()
            or "uk_nino" not in self._kinds
        ):
            return False
        if s > 3 and t[s - 4] in _WORD and not (t[s - 4] == "_" and _edge(t, s - 4)):
            return False
        return self._nino_at(t, s - 3, e, raw)

    def _nino_at(self, t: str, ls: int, e: int, raw: list[Raw]) -> bool:
        specs = [spec for spec in self._letter_ids.get(2, ()) if spec.kind == "uk_nino"]
        if not specs:
            return False
        for end in (e + 2, e):
            if end > len(t) or (
                end < len(t) and t[end] in _WORD and not (t[end] == "_" and _edge(t, end))
            ):
                continue
            if self._try_specs(t, ls, end, t[ls:end], specs, raw):
                return True
        return False

    def _sub_spans(self, t: str, start: int, end: int, raw: list[Raw]) -> None:
        groups = [m.span() for m in _SPACE_GROUPS.finditer(t, start, end)]
        count = len(groups)
        if count < 2:
            return
        width = [ge - gs for gs, ge in groups]
        # Left to right, longest first. A value's grouping that carries on past its edge
        # ("9400 1234 5678 9012 3456 78") means the run is one longer number, not a value
        # next to a number, so a split is only tried where the group width changes. Groups
        # longer than any grouping ("4111111111111111 0000000000000000") are numbers of
        # their own, whatever their widths.
        grouped = [k > 0 and w == width[k - 1] and w <= _GROUP_WIDTH for k, w in enumerate(width)]
        i = 0
        while i < count:
            if i and grouped[i]:
                i += 1
                continue
            for j in range(min(count, i + _MAX_GROUPS), i, -1):
                if (i == 0 and j == count) or (j < count and grouped[j]):
                    continue
                gs, ge = groups[i][0], groups[j - 1][1]
                if ge - gs >= 5 and self._classify(t, gs, ge, raw):
                    i = j
                    break
            else:
                i += 1

    def _scan_at(self, t: str, raw: list[Raw]) -> None:
        userinfo_end = -1
        if "://" in t and "url_credentials" in self._kinds:
            for m in _URL_USERINFO.finditer(t):
                userinfo_end = max(userinfo_end, m.end())
                # A masked or templated password ("user:********@", "${DB_PASSWORD}")
                # is no credential.
                if _PLACEHOLDER.match(m.group(2).lstrip(":")) is None:
                    raw.append((m.start(1), m.end(2), "url_credentials", 0.95))
        if "email" not in self._kinds:
            return
        at = t.find("@")
        while at != -1:
            nxt = t.find("@", at + 1)
            local = _EMAIL_LOCAL.search(t, max(0, at - 64), at)
            domain = _EMAIL_DOMAIN.match(t, at + 1) if local is not None else None
            if local is not None and domain is not None:
                ls = local.start()
                while ls < at and t[ls] in ".-+":
                    ls += 1
                if t[ls] == "_" and domain.end() < len(t) and t[domain.end()] == "_":
                    ls += 1  # Markdown emphasis "_jane@example.com_"
                local_part = t[ls:at]
                ok = (
                    local_part
                    and not local_part.endswith(".")
                    and ".." not in local_part
                    and not _in_authority(t, ls)  # URL userinfo, not a mailbox
                    and ls != userinfo_end
                    and len(domain.group()) <= 253
                )
                if ok:
                    raw.append((ls, domain.end(), "email", 0.99))
            at = nxt

    def _scan_secrets(self, t: str, raw: list[Raw]) -> None:
        for gate, rules in self._secret_groups:
            if gate in t:
                self._scan_gated(t, rules, raw)
        for pattern, rules in self._secret_pattern_groups:
            if pattern.search(t) is not None:
                self._scan_gated(t, rules, raw)

    def _scan_gated(self, t: str, rules: tuple[_SecretRule, ...], raw: list[Raw]) -> None:
        for _gate, literals, kind, regex, validate in rules:
            for literal in literals:
                if literal in t:
                    self._scan_secret(t, kind, regex, validate, raw)
                    break

    def _account_keys(self, t: str, raw: list[Raw]) -> None:
        """Keys of 64 random bytes in base64 (Azure storage account keys, shared access
        keys), wherever a word ending in "key" names them within a line or two before:
        a connection string, XML, a dictionary, a command line. A SHA-512 digest has the
        same shape; it is not named a key, and an integrity field's "sha512-" is left."""
        end = t.find("==")
        while end != -1:
            start = end - _KEY64_BODY
            if (
                start >= 0
                and (start == 0 or t[start - 1] not in _B64_CHARS)
                and (end + 2 == len(t) or t[end + 2] not in _B64_EDGE_AFTER)
                and _KEY64.fullmatch(t, start, end) is not None
                and _KEY_NAMED.search(t, max(0, start - 120), start) is not None
                and not t.endswith("sha512-", 0, start)
                # An SSH public key ("PublicKey: ssh-rsa AAAA…") is published, not secret.
                and _PUBLIC_KEY.search(t, max(0, start - 40), start) is None
            ):
                raw.append((start, end + 2, "secret", 0.9))
            end = t.find("==", end + 2)

    def _discord_tokens(self, t: str, raw: list[Raw]) -> None:
        # One search for the timestamp between its dots; a loop over every dot in the
        # text cost five times as much.
        middle = _DISCORD_MIDDLE.search(t, 23)
        while middle is not None:
            dot = middle.start()
            self._scan_secret(
                t, "secret", _DISCORD_BOT_TOKEN, v.discord_token_valid, raw, dot - 27, dot + 46
            )
            middle = _DISCORD_MIDDLE.search(t, dot + 1)

    def _scan_secret(
        self,
        t: str,
        kind: str,
        regex: re.Pattern[str],
        validate: Callable[[str], bool],
        raw: list[Raw],
        pos: int = 0,
        endpos: int = sys.maxsize,
    ) -> None:
        for m in regex.finditer(t, max(pos, 0), endpos):
            s, e = m.span()
            if (s > 0 and t[s - 1] in _WORD and not (t[s - 1] == "_" and _edge(t, s - 1))) or (
                e < len(t) and t[e] in _WORD and not (t[e] == "_" and _edge(t, e))
            ):
                continue
            if s > 0 and t[s - 1] == "_" and t[e - 1] == "_":
                e -= 1  # "_sk-proj-..._": the closing emphasis mark is not part of the key
            if (s > 0 and t[s - 1] == "-" and kind != "private_key") or not validate(m.group()):
                continue
            raw.append((s, e, kind, 0.99))

    def _scan_colons(self, t: str, raw: list[Raw]) -> None:
        n = len(t)
        i = t.find(":")
        while i != -1:
            nxt_from = i + 1
            left_ok = i > 0 and t[i - 1] in _HEX_COLON
            right_ok = i + 1 < n and t[i + 1] in _HEX_COLON
            if left_ok or right_ok:
                s = i
                while s > 0 and i - s < 40 and t[s - 1] in _HEX_COLON:
                    s -= 1
                if t[s] == ":" and t[s + 1 : s + 2] != ":":
                    s += 1  # a separator before the value ("device :06:dc:..."), not "::"
                m = _V6_TOKEN.match(t, s)
                if m is not None:
                    e = m.end()
                    nxt_from = max(nxt_from, e)
                    token = m.group()
                    if token.endswith(":") and not token.endswith("::"):
                        token, e = token[:-1], e - 1
                    if _bounded_or_emphasis(t, s, e):
                        self._hex_colon_token(token, s, e, raw)
            i = t.find(":", nxt_from)

    def _scan_dotted_macs(self, t: str, raw: list[Raw]) -> None:
        """Cisco's dotted form, three groups of four hex digits ("0012.3456.789a")."""
        for m in _MAC_DOTTED_MIDDLE.finditer(t):
            s, e = m.start() - 4, m.end() + 4
            if s < 0 or not all(c in _HEX_DIGITS for c in t[s : m.start()]):
                continue
            compact = (t[s : m.start()] + t[m.start() + 1 : m.end() - 1] + t[m.end() : e]).lower()
            if (
                _bounded(t, s, e, _WORD)
                and (s == 0 or t[s - 1] != ".")
                and (e == len(t) or t[e] != "." or not t[e + 1 : e + 2].isalnum())
                and compact not in _NO_DEVICE
            ):
                raw.append((s, e, "mac_address", 0.9))

    def _hex_colon_token(self, token: str, s: int, e: int, raw: list[Raw]) -> None:
        if _MAC_COLON.fullmatch(token) is not None:
            if token.replace(":", "").lower() not in _NO_DEVICE:
                raw.append((s, e, "mac_address", 0.95))
            return
        if token.count(":") < 2 or sum(c not in ":." for c in token) < 3:
            return
        if not (token.count(":") == 7 or "::" in token):
            return  # clock times "10:30:45" and ratios are not addresses
        if v.ip_valid(token):
            raw.append((s, e, "ip_address", 0.95))

    def _passports(self, t: str, lower: str, raw: list[Raw]) -> None:
        for i in _occurrences(lower, ((word, lower.find(word)) for word in _PASSPORT_WORDS)):
            if i and lower[i - 1].isalnum():
                continue  # inside a word
            before = _PASSPORT_NAMED_BEFORE.search(t, max(0, i - 48), i)
            if before is not None and sum(c.isdigit() for c in before.group(1)) >= 2:
                raw.append((before.start(1), before.end(1), "passport", 0.9))
            m = _PASSPORT.match(t, i)
            if m is None or sum(c.isdigit() for c in m.group(1)) < 2:
                continue
            raw.append((m.start(1), m.end(1), "passport", 0.9))
            # The numbers listed after it are of its length ("... and then 2 days" ends it).
            size = len(m.group(1))
            more = _PASSPORT_MORE.match(t, m.end())
            while more is not None and len(more.group(1)) == size:
                if sum(c.isdigit() for c in more.group(1)) < 2:
                    break
                raw.append((more.start(1), more.end(1), "passport", 0.9))
                more = _PASSPORT_MORE.match(t, more.end())

    def _scan_words(self, t: str, raw: list[Raw], has_digit: bool = True) -> None:
        kinds = self._kinds
        # Offsets in ``lower`` must equal those in ``t``: str.lower() can lengthen a
        # non-ASCII letter ("İ"), and then only the ASCII letters are lowered (a dict
        # lookup per character, far slower than lower()).
        lower = t.lower()
        if len(lower) != len(t):
            lower = t.translate(_ASCII_LOWER)
        # Each label word is looked for once (a C substring search): the phrase pass
        # below starts from these first indexes instead of searching again. Most texts
        # hold none of them, and then these searches are the whole label pass. (A regex
        # alternation of the words tries each one at every position: slower than all the
        # searches together.)
        find = lower.find
        at_pass, at_pw, at_secret = find("pass"), find("pw"), find("secret")
        at_token, at_key = find("token"), find("key")
        if (
            at_pass != -1
            or at_pw != -1
            or at_secret != -1
            or at_token != -1
            or at_key != -1
            or "credential" in lower
            or "creds" in lower
        ):
            if "=" in t or ":" in t:
                for sep in _ASSIGN_SEP.finditer(t):
                    p = sep.start()
                    key = _secret_key_before(t, lower, p)
                    if key is None:
                        if t.startswith("=", p) and p > 1 and t[p - 1] in "=!\"'` \t":
                            self._compared(t, lower, p, raw)
                        continue
                    op = t[p : p + 2] if t[p : p + 2] in (":=", "=>", "==") else t[p]
                    after = p + len(op)
                    quoted = _QUOTE_AFTER.match(t, after)
                    if quoted is None and op == ":":
                        # A literal after a type: 'password: str = "hunter2"'.
                        quoted = _ANNOTATED_LITERAL.match(t, after)
                        op = "=" if quoted is not None else op
                    value = _quoted(t, quoted.end()) if quoted else None
                    if value is None:
                        value = _yaml_words(t, key, after) if op == ":" else None
                    if value is None:
                        value = _ASSIGN_VALUE.match(t, after)
                        if (
                            value is not None
                            and value.group(1).endswith(("=", ":"))
                            and "\n" in t[after : value.start(1)]
                        ):
                            value = None  # "API_KEY=\nOTHER_KEY=": empty, then the next key
                    if value is not None:
                        self._assignment(key.group(1).lower(), value, raw, key.start(1), op)
            if "," in t:
                self._argument_pairs(t, lower, raw)
            if "</" in t:
                self._elements(t, raw)
            # "api key is" and "api token is" start at "api": without key or token no
            # phrase does.
            at_api = find("api") if at_key != -1 or at_token != -1 else -1
            # Matched at each label word only: a scan of the whole text with the phrase's
            # alternation cost more than the rest of the label pass.
            for i in _occurrences(
                lower,
                (
                    ("pass", at_pass),
                    ("pw", at_pw),
                    ("api", at_api),
                    ("secret", at_secret),
                    ("token", at_token),
                ),
            ):
                m = _PHRASE.match(lower, i)
                if m is None:
                    continue
                value = _ASSIGN_VALUE.match(t, m.end())
                if value is not None:
                    self._assignment(m.group(1), value, raw)
        if "secret" in kinds and ("bearer" in lower or "basic" in lower or "authoriz" in lower):
            for m in _BEARER.finditer(lower):
                self._bearer(t, m.start(1), m.end(1), raw)
        if "password" in kinds and ("-u" in t or "--user" in t) and "curl" in lower:
            for m in _CURL_USER.finditer(t):
                self._curl_user(m, raw)
        if "swift_bic" in kinds and ("bic" in lower or "swift" in lower):
            for i in _occurrences(lower, ((word, find(word)) for word in ("bic", "swift"))):
                m = _BIC.match(t, i)
                if m is None:
                    continue
                code = m.group(1)
                if code.isupper() and v.bic_valid(code):
                    raw.append((m.start(1), m.end(1), "swift_bic", 0.9))
        if not has_digit:
            return  # dates of birth and ages are written with digits
        if "date_of_birth" in kinds and (
            "birth" in lower or "dob" in lower or "d.o.b" in lower or "born" in lower
        ):
            last = -1
            dob_words = ("birth", "dob", "d.o.b", "born")
            for i in _occurrences(lower, ((word, find(word)) for word in dob_words)):
                # "date of birth" starts before its word; the date follows within a line.
                m = _DOB.search(t, max(last, i - 14), i + 120)
                if m is None or m.start() < last:
                    continue
                last = m.end()
                if _dob_valid(m):
                    first = next(i for i in range(1, len(m.groups()) + 1) if m.group(i) is not None)
                    raw.append((m.start(first), m.end(), "date_of_birth", 0.9))
        if "passport" in kinds and "pas" in lower:  # in each of the passport words
            self._passports(t, lower, raw)
        if "age" not in kinds:
            return
        # "age" mostly occurs inside words ("message", "page"): one look at the character
        # before each occurrence rejects those without running the pattern there.
        i, last = find("age"), 0
        while i != -1:
            if i >= last and (i == 0 or not lower[i - 1].isalpha()):
                m = _AGE_BEFORE.match(lower, i)
                if m is not None:
                    last = m.end()
                    if int(m.group(1)) <= 120:
                        raw.append((m.start(1), m.end(1), "age", 0.8))
            i = find("age", i + 1)
        if " old" in lower or "-old" in lower or "y/o" in lower:
            for m in _AGE_AFTER.finditer(lower):
                number = _AGE_NUMBER.search(lower, max(0, m.start() - 5), m.start())
                if number is not None and int(number.group(1)) <= 120:
                    raw.append((number.start(1), number.end(1), "age", 0.8))

    def _argument_pairs(self, t: str, lower: str, raw: list[Raw]) -> None:
        """A quoted name of a secret and a quoted value as two arguments of a call:
        ``System.setProperty("API_TOKEN", "…")``, ``getenv_or("db_password", "…")``."""
        for pair in _ARGUMENT_PAIR.finditer(t):
            key = _secret_key_before(t, lower, pair.end(2))
            value = _quoted(t, pair.end()) if key is not None else None
            if key is not None and value is not None:
                self._assignment(key.group(1).lower(), value, raw, key.start(1), "=")

    def _elements(self, t: str, raw: list[Raw]) -> None:
        """An XML element named after a secret: ``<password>…</password>``,
        ``<apiKey>`` and its value on the lines between."""
        for element in _ELEMENT.finditer(t):
            name = element.group(2)
            if not t.startswith(name + ">", element.start() + 1):
                continue  # <a>…</b>: not one element
            key = _secret_key_before(name, name.lower(), len(name))
            if key is not None:
                # The text alone, so the opening tag is not read as a placeholder; no
                # operator, so a plain word there is the value, not a name in code.
                value = _QUOTED_VALUE.match(t, element.start(1), element.end(1))
                assert value is not None  # ".+" over the element's text
                self._assignment(key.group(1).lower(), value, raw)

    def _curl_user(self, m: re.Match[str], raw: list[Raw]) -> None:
        """The password of curl's ``-u user:password`` (the user when the password is
        empty: an API key passed as the user, ``-u sk_live_…:``)."""
        t = m.string
        group = next(g for g in (1, 2, 3) if m.group(g) is not None)
        start, end = m.span(group)
        colon = t.find(":", start, end)
        if colon == -1:
            return  # no password given: curl asks for it
        if colon + 1 < end:
            start = colon + 1
            if t[start] in "'\"" and t[end - 1] == t[start] and end - start > 2:
                start, end = start + 1, end - 1  # kevin:'pRf7…'
            key = "password"
        else:
            end, key = colon, "token"
        value = _QUOTED_VALUE.match(t, start, end)
        if value is not None:
            # No operator: a plain word here is the value, not a name in code.
            self._assignment(key, value, raw)

    def _bearer(self, t: str, s: int, e: int, raw: list[Raw]) -> None:
        """A credential after an HTTP auth scheme ("Authorization: Bearer 3f9a...")."""
        lead, end = _trim_value(t[s:e])
        s, e = s + lead, s + end
        value = t[s:e]
        if e - s < 8 or _PLACEHOLDER.match(value) or value.startswith("eyJ"):
            return  # JWTs are their own kind
        if sum(c.isdigit() for c in value) == 0 or v.entropy(value) < 2.5:
            return
        raw.append((s, e, "secret", 0.8))

    def _compared(self, t: str, lower: str, p: int, raw: list[Raw]) -> None:
        """A quoted value compared with a key named after it: ``"…" == password``,
        ``"…" !== api_key`` (the "=" at ``p`` is the comparison's first or second)."""
        op = p - 1 if t[p - 1] in "=!" else p
        before = t[:op].rstrip(" \t")
        quote = before[-1:]
        if quote not in _QUOTES:
            return
        opened = before.rfind(quote, max(0, len(before) - 258), len(before) - 1)
        if opened == -1 or "\n" in before[opened:]:
            return
        key = _COMPARED_KEY.match(lower, p + 1)
        if key is None:
            return
        value = _quoted(t, opened + 1)
        if value is not None and value.end() == len(before) - 1:
            self._assignment(key.group(1), value, raw, -1, "==")

    def _assignment(
        self, key: str, m: re.Match[str], raw: list[Raw], key_at: int = -1, sep: str = ""
    ) -> None:
        """The value ``m`` (group 1) named by ``key``: a secret unless it is a placeholder,
        a code reference (``password = self.password``) or too plain to be one.
        ``key_at`` is where the key starts, ``sep`` the operator after it (empty for a
        phrase: "my password is …")."""
        t = m.string
        start = m.start(1)
        if sep == ":" and key_at > 0 and _slice_or_lambda(t, key_at, start):
            return
        quote = t[start - 1] if start > 0 and t[start - 1] in _QUOTES else ""
        if sep and not quote and any(q in t[m.start() : start] for q in _QUOTES):
            return  # the key ended a string ("prompt='Password: ', stream=None")
        if quote and m.re is not _QUOTED_VALUE:
            m = _quoted(t, start) or m
            quote = quote if m.re is _QUOTED_VALUE else ""
        lead, end = _trim_value(m.group(1)) if not quote else (0, len(m.group(1)))
        value = m.group(1)[lead:end]
        # With what came before it ("${DB_PASSWORD}"), less a markup tag ("<td>").
        written = _TAG.sub("", m.group(0)).lstrip(" \t\"'")
        if len(value) < 6 or _PLACEHOLDER.match(value) or _PLACEHOLDER.match(written):
            return
        if value.endswith("=") and value[:-1].islower() and _IDENTIFIER.fullmatch(value[:-1]):
            return  # a keyword argument named in prose ("pass `api_key=` or `token=`")
        if " " in value and _FORMAT_FIELD.search(value):
            return  # a template to fill in ("--password=%s", "Bearer {}")
        kind = "password" if _names_password(key) else "secret"
        if kind == "secret" and _DECIMAL.fullmatch(value):
            return  # "lastModifiedSecret": 1556311319.069: a time or a version, no key
        if quote:
            if value.casefold() in _KEY_WORD_VALUES:
                return  # {"password": "Password"}: a form's label, not its value
            if sep == ":" and " " in value and _PROSE.fullmatch(value) and _is_message(value):
                return  # "password": "Must be 8 characters or more" (a message)
            if _NAMED_KEY.fullmatch(value):
                return  # ENV_API_KEY = "ANTHROPIC_API_KEY": the name of a secret
            if _NAME_PATH.fullmatch(value) and _KEY_WORD_IN.search(value):
                return  # OUTPUT_TOKEN = "gen_ai.server.time_per_output_token": a name
            if kind == "secret" and _CAPITALISED_NAME.fullmatch(value):
                return  # "output_token": "NextToken": no token or key is words of letters
        elif _code_reference(t, key_at, sep, start + lead, start + end):
            return
        # Character classes by C-level string methods (no per-character Python loop).
        classes = (
            (value.upper() != value)
            + (value.lower() != value)
            + (value.translate(DROP_DIGITS) != value)
            + (not value.isalnum())
        )
        # A password label is evidence enough for a weaker one ("FNNJNZg1"), and a quoted
        # literal assigned to a password is one however plain ('db_password = "astring"').
        if classes < (1 if quote and kind == "password" else 2) or v.entropy(value) < (
            2.0 if kind == "password" else 2.5
        ):
            return
        bare = value.rstrip("!?")
        if bare.startswith(self._secret_literals) and any(
            rule[3].fullmatch(bare) and rule[4](bare) for rule in self._secrets
        ):
            return  # a key with its own kind ("OPENAI_API_KEY=sk-proj-..."): reported as that
        s = m.start(1) + lead
        e = s + len(value)
        aws = "aws" in key or "secret_access" in key.replace("-", "_")
        if aws:
            # An exclamation or question mark after the key ends the sentence; a dot or
            # comma before it (a dot leader U+2024, folded to ".") is outside the key's
            # alphabet, so it cannot be part of it.
            bare = value.rstrip("!?")
            core = bare.lstrip(".,;:")
            if _AWS_SECRET.match(core):
                start = s + len(bare) - len(core)
                raw.append((start, start + len(core), "aws_secret_key", 0.95))
                return
        raw.append((s, e, kind, 0.8))


_QUOTES = "\"'`"
# A number with a fraction: a timestamp or a version where a secret's name stands.
_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")
# A printf or str.format field, a word of its own: with a space, the value is a phrase
# to fill in elsewhere. ("Rb%d9Prlm!" is a password: a field ends where a word does.)
_FORMAT_FIELD = re.compile(r"(?<![%\w])(?:%[sdr]|%\([a-z_]+\)[sdr]|\{[0-9]?\})(?![A-Za-z0-9])")
# A call's first argument a quoted name, a comma and the second argument's opening
# quote: two string arguments, the name's and its value ("setProperty(\"API_TOKEN\", ").
# A list of names ("['username', 'password', ...]") opens no call.
_ARGUMENT_PAIR = re.compile(r"\([ \t]*([\"'])([\w.-]{1,64})\1[ \t]*,[ \t]*[\"'](?=[^\"'\n])")
# An element and its text (on its line or the lines between the tags), the tag's name
# being looked at after.
_ELEMENT = re.compile(
    r"<[A-Za-z][\w.-]{0,63}>\s*([^<>\s][^<>\n]{5,255}?)\s*</([A-Za-z][\w.-]{0,63})>"
)


def _secret_key_before(t: str, lower: str, p: int) -> re.Match[str] | None:
    """The name of a secret that ends right before ``p`` (its operator or closing quote),
    in snake, kebab or upper case (read in ``lower``) or in camelCase (read in ``t``);
    None when there is none, or when it names a token that is no secret (a page's,
    a public or an anti-forgery token)."""
    key = _ASSIGN_KEY.search(lower, max(0, p - 40), p)
    if key is None:
        key = _CAMEL_KEY.search(t, max(0, p - 40), p)
        if key is None:
            return None
    if key.group(1).lower().endswith("token") and (
        _PLAIN_TOKEN_BEFORE.search(t, max(0, key.start(1) - 14), key.start(1)) is not None
    ):
        return None
    return key


# A quoted value: anything to the closing quote (`_quoted` bounds it).
_QUOTED_VALUE = re.compile(r"(.+)", re.DOTALL)


def _quoted(t: str, start: int) -> re.Match[str] | None:
    """The value quoted by the quote before ``start``, to its closing quote on the same
    line (at most 256 characters): whatever it holds ("A,.:-¨@*¿?!", "xK9|<…>"), since a
    value cut at its first comma or bracket would send the rest raw."""
    quote = t[start - 1]
    close = t.find(quote, start, start + 257)
    if close <= start or "\n" in t[start:close]:
        return None
    return _QUOTED_VALUE.match(t, start, close)


# Values that repeat the key's own word: a form field's label or type, not a secret.
_KEY_WORD_VALUES = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "api key",
        "apikey",
        "api_key",
        "credential",
        "credentials",
        "creds",
    }
)
# Three or more plain words: a message about the value ("must be 8 characters").
# The words a message about a secret is written with, and a passphrase of random words
# ("correct horse battery staple") seldom holds: grammar's small words and a form's.
_MESSAGE_WORDS = frozenset(
    {
        "a", "an", "the", "is", "are", "be", "was", "were", "must", "should", "can",
        "cannot", "can't", "could", "not", "no", "do", "does", "don't", "did", "your",
        "you", "my", "of", "to", "at", "in", "on", "for", "with", "or", "and", "too",
        "please", "enter", "required", "invalid", "incorrect", "wrong", "characters",
        "letters", "digits", "least", "match", "matches", "contain", "contains", "has",
        "have", "password", "passwords", "secret", "token", "key",
    }
)  # fmt: skip
_WORDS_OF = re.compile(r"[a-z']+")


def _is_message(value: str) -> bool:
    """Whether words read as a message (a form's hint), not as a passphrase."""
    return not _MESSAGE_WORDS.isdisjoint(_WORDS_OF.findall(value.lower()))


# A line of a YAML mapping: a key at the line's start (under indentation or a list's "- ").
_YAML_KEY_LINE = re.compile(r"^[ \t]*(?:- )?[\w.-]+:(?:[ \t]|$)", re.MULTILINE)
# A key that opens a nested mapping: alone on its line, nothing after its colon.
_YAML_PARENT = re.compile(r"[ \t]*(?:- )?[\w.-]+:[ \t]*")
# What may stand before a secret's word in a YAML key at a line's start ("  db_").
_YAML_KEY_START = re.compile(r"[ \t]*(?:- )?[\w.-]*")
# A plain scalar of two to eight words, which YAML reads to the line's end (a comment
# after " #" left out): what follows a password's key there is the whole passphrase.
_PLAIN_WORDS = re.compile(
    r"[ \t]*([^\s\"'`=:#][^\s\"'`=:]*(?: [^\s\"'`=:#][^\s\"'`=:]*){1,7})[ \t]*"
    r"(?:[ \t]#[^\n]*)?$",
    re.MULTILINE,
)


def _names_password(word: str) -> bool:
    """Whether a secret's word (a `_SECRET_KEY_WORDS` match) names a password: "pass",
    "password", "passwd", "passphrase", "pw", "pwd" (also ending a longer name)."""
    return word.startswith(("pass", "pw"))


def _yaml_words(t: str, key: re.Match[str], after: int) -> re.Match[str] | None:
    """The words after a password's key that starts a line of YAML, when they read as a
    passphrase ("password: correct horse battery staple"), not as a message; else None.

    The key must be indented under a parent key (the line before it: ``db:``) or the
    text must hold another line of a mapping: one line alone ("password: reset it
    tomorrow") reads as prose as often as YAML, and there the word right after the key
    is taken as before. Not in Python
    source, whose lines a mapping's look like ("else:") and where a secret is a quoted
    literal."""
    word = key.group(1)
    if not _names_password(word):
        return None
    start = key.start(1)
    line_start = t.rfind("\n", 0, start) + 1
    if _YAML_KEY_START.fullmatch(t, line_start, start) is None:
        return None
    words = _PLAIN_WORDS.match(t, after)
    if words is None or _is_message(words.group(1)):
        return None
    value = words.group(1)
    # A type in Python ("password: str | None,"), where a secret is a quoted literal.
    if " | " in value or value.endswith(",") or _PYTHON_LINE.search(t) is not None:
        return None
    if t[line_start : line_start + 1] in (" ", "\t"):
        # Indented under a parent key ("db:" on a line of its own): a nested mapping.
        parent_start = t.rfind("\n", 0, max(0, line_start - 1)) + 1
        if _YAML_PARENT.fullmatch(t, parent_start, max(parent_start, line_start - 1)):
            return words
    lines = _YAML_KEY_LINE.finditer(t)
    return words if next(lines, None) is not None and next(lines, None) is not None else None


_PROSE = re.compile(r"[A-Za-z][a-z']*[,.:;!?]?(?: (?:[A-Za-z][a-z']*|[0-9]+)[,.:;!?]?){2,}")
# What code writes where a value could stand: a name, a qualified name, a call or a
# subscript ("self.password", "os.environ[", "get_secret(", "Optional[str]").
_CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.()[]:=*-")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE_PARTS = re.compile(r"[.()\[\]:=*-]+")
_WORD_IN_NAME = re.compile(r"[a-z]{4}")
_CHAR_CLASS = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "a" * 26 + "A" * 26 + "0" * 10,
)


def _code_syntax(value: str, after: str) -> bool:
    """Whether ``value`` reads as an expression: a bracket opens after a name, a call,
    a subscript or another bracket and closes in order, a closing one is followed by
    ``.``, a call, a subscript or another closing one; ``=`` only inside a call, ``:``
    only in a subscript, ``-`` only in either, ``*`` only to unpack. Brackets may stay open where
    the value was cut: at a string argument or the end of the line right after the
    bracket ("os.environ[", "tokenize(" at a line's end), at a prefixed string
    ('re.compile(r"'), at a keyword argument's string ('Token(type="'), at the next
    argument ("getattr(value,") or before an operator
    ("unquote(passwd or"). A password with a
    bracket in it ("zuk8URDpqs(tf", "uo(9TE)v") fails one of these."""
    depth, prev = 0, ""
    for ch in value:
        if ch in "([":
            if not prev or not (prev.isalnum() or prev in "_)](["):
                return False
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                return False
        elif prev in (")", "]") and ch != "." and not (depth and ch in ":,"):
            return False
        prev = ch
    cut = after[:1]
    if depth and not (
        (value[-1] in "([" and cut in _CUT_AFTER_OPENER)
        or (
            (value[-1].isalnum() or value[-1] in "_)]")
            and (cut == "," or _CONTINUED.match(after) is not None)
        )
        or (cut in _QUOTES and _STRING_PREFIX.search(value) is not None)
        # A keyword argument's string ('Token(type="", …)').
        or (value[-1] == "=" and cut in _QUOTES)
    ):
        return False
    for mark, openers in (("=", "("), (":", "["), ("-", "([")):
        at = value.find(mark)
        if at != -1 and not any(0 <= value.find(opener) < at for opener in openers):
            return False
    return "*" not in value.replace("(**", "(").replace("(*", "(")


_CUT_AFTER_OPENER = ('"', "'", "`", "", "\n", "\r")
# An expression going on after a space inside a call: an operator or a keyword.
_CONTINUED = re.compile(r" (?:[-+*/%<>=!&|]|(?:or|and|if|else|for|in|is|not)(?![A-Za-z0-9_]))")
_STRING_PREFIX = re.compile(r"[(\[](?:[rRbBuUfF]|[rR][bBfF]|[bBfF][rR])\Z")


def _random_part(part: str) -> bool:
    """Whether a part of a would-be name with digits in it is random text: long without a
    word in it, or switching between lower case, capitals and digits as random text does
    (about 6 times in 10 characters): "hZ9Ywoag0", not "Ed25519PrivateKey", "b64encode"
    or "standard_b64encode" (a third or fewer, and words)."""
    if len(part) < 6 or part.translate(DROP_DIGITS) == part:
        return False
    if len(part) >= 12 and _WORD_IN_NAME.search(part) is None:
        return True  # long, with digits, and not a word in it ("QHHTT5lf8WCFAM80gHI3")
    classes = part.translate(_CHAR_CLASS).replace("_", "")
    changes = sum(a != b for a, b in itertools.pairwise(classes))
    return changes >= 0.4 * (len(classes) - 1)


# A name in capitals or lower case with a word of a secret in it: what a setting, an
# environment variable or a grant type is called ("ANTHROPIC_AUTH_TOKEN", "refresh_token").
# A lowercase name of parts ("gen_ai.usage.output_tokens", "user_password") holding a
# secret's word: an attribute's, a field's or a header's name, not a secret.
_NAME_PATH = re.compile(r"[a-z][a-z0-9]*(?:[._-][a-z0-9]+)+")
_KEY_WORD_IN = re.compile(r"pass|pwd|secret|token|key|credential")
# Two or more capitalised words of letters ("NextToken", "sessionToken"): a name. Kept
# for tokens and keys only: a password may be words ("SuperSecretPassword").
_CAPITALISED_NAME = re.compile(r"[A-Za-z][a-z]+(?:[A-Z][a-z]+)+")
_NAMED_KEY = re.compile(
    r"(?:[A-Z][A-Z_]*|[a-z][a-z_]*)(?:(?<=[A-Z_])(?:KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)"
    r"|(?<=[a-z_])(?:key|token|secret|password|credentials?))[A-Za-z_]*"
)
# What follows a name that is a type or an expression, not a YAML value.
_CODE_AFTER = (",", ")", "|", "=", "]", "}", " if ", " or ", " and ", " else ")
# A type's name: capitalised, ending in a capitalised word ("ClientSecret", "SecretStr",
# "PKCS7PrivateKeyTypes"; not "Password123").
_TYPE_NAME = re.compile(r"_?[A-Z][A-Za-z0-9]*[A-Z][a-z]+")
# A line of Python that only code has: a definition or an import at a line's start.
_PYTHON_LINE = re.compile(
    r"^[ \t]*(?:(?:async[ \t]+)?def|class|import|from[ \t]+[\w.]+[ \t]+import)[ \t]", re.M
)


def _type_annotation(t: str, s: int, e: int) -> bool:
    """Whether the name ``t[s:e]`` after ``key:`` annotates a type, in Python source
    (``client_secret: ClientSecret`` in a class body, ``private_key: PKCS7PrivateKeyTypes,``
    in a signature), where the same line in YAML is a value (``password: SuperSecret``):
    the text's own lines tell."""
    if _TYPE_NAME.fullmatch(t, s, e) is None:
        return False
    line_end = t.find("\n", e)
    ends_line = not t[e : len(t) if line_end == -1 else line_end].strip()
    return (ends_line or t.startswith(_CODE_AFTER, e)) and _PYTHON_LINE.search(t) is not None


_SLICE_END = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\]")


def _described(t: str, s: int, e: int) -> bool:
    """Whether the word ``t[s:e]`` after ``key:`` starts a sentence describing the key, as
    a docstring's arguments do (``client_secret: Configuration options for the …``): a
    capitalised word of letters, then lower-case words, in Python source (a secret in
    Python is a quoted literal)."""
    return (
        t[s].isupper()
        and t[s:e].isalpha()
        and t.startswith(" ", e)
        and t[e + 1 : e + 2].islower()
        and _PYTHON_LINE.search(t) is not None
    )


def _slice_or_lambda(t: str, key_at: int, value_at: int) -> bool:
    """Whether the ``:`` after a key at ``key_at`` is code's: a slice between two names
    (``doc[start_token:end_token]``) or a lambda's parameter (``lambda token: …``)."""
    name_at = key_at
    while name_at > 0 and (t[name_at - 1].isalnum() or t[name_at - 1] == "_"):
        name_at -= 1  # the whole name: "start_token", not "token"
    if name_at > 0 and t[name_at - 1] == "[":
        return _SLICE_END.match(t, value_at) is not None
    return t.endswith("lambda ", 0, name_at)


def _code_reference(t: str, key_at: int, sep: str, s: int, e: int) -> bool:
    """Whether the unquoted value ``t[s:e]`` after a secret's key is code that refers to
    the secret rather than the secret itself: a qualified name, a call or a subscript
    (``password = self.password``, ``api_key = os.environ[...]``), or a plain name
    without digits in an assignment or keyword argument (``api_key=api_key``) or before
    a type annotation's end (``token: TokenRecord,``).

    A plain word in an environment file (``DB_PASSWORD=SuperSecret``: a key in capitals
    right before "=") or at the end of a YAML line (``password: SuperSecret``) is a value.
    """
    value = t[s:e]
    first = value[:1]
    if not first or not (first.isalpha() or first == "_") or not _CODE_CHARS.issuperset(value):
        return False
    if "(" in value or "[" in value or "." in value:
        if not _code_syntax(value, t[e : e + 8]):
            return False
        # Unless a part is random: a dotted token ("MTk4NjIy….Cl2FMQ.ZnCjm1X…") or a
        # password with a bracket in it ("hZ9Ywoag0(") is no name.
        return not any(_random_part(part) for part in _CODE_PARTS.split(value))
    if not sep:
        return False  # "my password is SuperSecret": a word in a sentence is the value
    if sep == ":" and (_type_annotation(t, s, e) or _described(t, s, e)):
        return True
    if _IDENTIFIER.fullmatch(value) is None or value.translate(DROP_DIGITS) != value:
        return False
    if sep in ("=", ":=", "=>", "=="):
        name = t[key_at:s].split("=", 1)[0] if key_at >= 0 else ""
        # KEY=value with the key in capitals: an environment file, where values are bare.
        return not (name.rstrip(" \t\"'!:").isupper() and not name.endswith((" ", "\t")))
    # After ":" a name is a type or an expression when more of the code follows it.
    return t.startswith(_CODE_AFTER, e) or t[e : e + 4].lstrip(" \t").startswith(_CODE_AFTER)


_TRAILING = frozenset(".,;:")
_OPENERS = "([{<"
_CLOSERS = ")]}>"
_TAG = re.compile(r"<[a-z]{1,5}>")


def _unicode_mark(c: str) -> bool:
    return c > "\x7f" and unicodedata.category(c)[0] == "P"


def _trim_value(value: str) -> tuple[int, int]:
    """Where a value starts and ends without the quotes, brackets or marks around it."""
    lead = 0
    while lead < len(value) and _unicode_mark(value[lead]):
        lead += 1
    end = len(value)
    # Markdown emphasis around the value: "**value**", "_value_".
    for mark in ("**", "*", "__", "_"):
        if value.startswith(mark, lead) and value.endswith(mark) and end - lead > 2 * len(mark):
            lead += len(mark)
            end -= len(mark)
            break
    for i in range(lead, end):
        c = value[i]
        if c > "\x7f" and unicodedata.category(c) in ("Ps", "Pe", "Pi", "Pf"):
            end = i
            break
    while end > lead and (value[end - 1] in _TRAILING or _unicode_mark(value[end - 1])):
        end -= 1
    # A bracket that opens before the value or closes after it: "(value)", "{value}".
    while lead < end and value[lead] in _OPENERS:
        lead += 1
    while end > lead and value[end - 1] in _CLOSERS:
        closer = value[end - 1]
        inside = value[lead:end]
        if inside.count(closer) <= inside.count(_OPENERS[_CLOSERS.index(closer)]):
            break  # balanced: the bracket is part of the value
        end -= 1
    while end > lead and value[end - 1] in _TRAILING:
        end -= 1
    return lead, end


def _in_authority(t: str, ls: int) -> bool:
    """Whether ``ls`` starts the user part of a URL ("ftp://bob@", "https://u:pw@")."""
    if ls < 2:
        return False
    if t[ls - 2 : ls] == "//":
        return True
    if t[ls - 1] != ":":
        return False  # "mailto:", "users/" and "email:" are not URLs' user parts
    j = t.rfind("//", max(0, ls - 130), ls)
    if j == -1:
        return False
    between = t[j + 2 : ls - 1]
    return not any(c.isspace() or c in "/@" for c in between)


def _bounded_or_emphasis(t: str, s: int, e: int) -> bool:
    """No word character glued to ``t[s:e]``, except Markdown's emphasis underscores."""
    left = s == 0 or t[s - 1] not in _WORD or (t[s - 1] == "_" and _edge(t, s - 1))
    return left and (e == len(t) or t[e] not in _WORD or (t[e] == "_" and _edge(t, e)))


_SENTENCE_END = re.compile(r"[.!?][ \t\n]")


def _sentence_end(t: str, s: int, e: int) -> bool:
    """Whether a sentence ends between ``s`` and ``e``: a word there names something else."""
    return _SENTENCE_END.search(t, s, e) is not None


def _occurrences(lower: str, firsts: Iterable[tuple[str, int]]) -> list[int]:
    """Where each word occurs in ``lower``, in text order.

    Each word comes with its first index (-1 when it does not occur), so that no word is
    searched for from the start twice.
    """
    found = []
    for word, first in firsts:
        i = first
        while i != -1:
            found.append(i)
            i = lower.find(word, i + 1)
    found.sort()
    return found


def _starts_item(t: str, i: int) -> bool:
    """Whether ``i`` starts a line or a list item (spaces and tabs before it aside)."""
    i -= 1
    while i >= 0 and t[i] in " \t":
        i -= 1
    return i < 0 or t[i] in "\r\n,;|\\"


def _edge(t: str, i: int) -> bool:
    """Whether the underscore at ``i`` is an emphasis mark: no letter or digit outside it."""
    return (i == 0 or t[i - 1] not in _ALNUM) or (i + 1 == len(t) or t[i + 1] not in _ALNUM)


def _bounded(t: str, s: int, e: int, word: frozenset[str]) -> bool:
    return (s == 0 or t[s - 1] not in word) and (e == len(t) or t[e] not in word)


_VERSION_WORD = re.compile(r"(?<![a-z])(?:version|ver\.?|release|build|v)[ \t]*\Z")


def _version_like(t: str, start: int) -> bool:
    """'v1.2.3.4' is caught by the glued letter; 'version 1.2.3.4' by the word before."""
    return _VERSION_WORD.search(*_words_before(t, start, 12)) is not None


def _words_before(t: str, start: int, size: int) -> tuple[str, int]:
    """The ``size`` characters before ``start`` lowered, and where a search in them starts.

    One character more is kept on the left and only looked behind at: a window cut inside
    a word must not make its tail a word ("ho|tel" is not "tel", "mi|ss" not "ss").
    """
    if start <= size:
        return t[:start].lower(), 0
    return t[start - size - 1 : start].lower(), 1


def _dob_valid(m: re.Match[str]) -> bool:
    g = m.groupdict()
    if g["y1"] is not None:
        return v.date_valid(int(g["y1"]), int(g["m1"]), int(g["d1"]))
    if g["y2"] is not None:
        a, b, year = int(g["a2"]), int(g["b2"]), int(g["y2"])
        # Day-first or month-first: a date of birth either way is a date of birth.
        return v.date_valid(year, b, a) or v.date_valid(year, a, b)
    if g["y3"] is not None:
        return v.date_valid(int(g["y3"]), g["m3"], int(g["d3"]))
    return v.date_valid(int(g["y4"]), g["m4"], int(g["d4"]))


def _engine_for(
    kinds: frozenset[str] | None,
    locales: tuple[str, ...] | None,
    levels: tuple[tuple[str, Level], ...] = (),
) -> BuiltinDetector:
    return _cached_engine(kinds, locales, levels, packs_version())


@lru_cache(maxsize=64)
def _cached_engine(
    kinds: frozenset[str] | None,
    locales: tuple[str, ...] | None,
    levels: tuple[tuple[str, Level], ...],
    _packs_version: int,
) -> BuiltinDetector:
    return BuiltinDetector(kinds, locales, dict(levels))
