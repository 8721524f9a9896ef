"""Secrets in source code: what code says about a secret is not the secret.

Code is much of what people send to a model (a function to review, a config to fix),
and it names secrets everywhere: ``password = self.password``, ``api_key=api_key``,
``token: Optional[str] = None``. Those are references; a literal after the same key
(``password = "xK9#mP2qLz"``) is a value, read whole to its closing quote.
"""

from __future__ import annotations

import random
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiguard import detect

SECRET_KINDS = {"password", "secret"}


def secrets_in(text: str) -> list[str]:
    return [text[f.start : f.end] for f in detect(text) if f.kind in SECRET_KINDS]


@pytest.mark.parametrize(
    "line",
    [
        'password = os.environ["DB_PASSWORD"]',
        "conn = connect(host=host, user=user, password=db_password)",
        "password = self.password",
        'token = response.json()["access_token"]',
        'api_key = get_secret("openai")',
        "secret_key = settings.SECRET_KEY",
        "api_key: Optional[str] = None",
        "self.api_key = api_key",
        "token: TokenRecord,",
        'return {"page_token": next_page}',
        "if token is Name.Builtin and value:",
        "token = cls(**payload)",
        "decoded = base64.b64decode(secret[6:])",
        "fd, token = probes.descriptors[-1]",
        "private_key = ed25519.Ed25519PrivateKey.from_private_bytes(secret)",
        'credentials = standard_b64encode(credentials).decode("ascii")',
        "passwd = unquote(passwd or '')",
        "token = token[len(prefix):] if token else None",
        "password = enforce_bytes(proxy_auth[1], name='proxy_auth')",
        'pattern_token = re.compile(r"\\w+")',
        "read_token: Callable[[int, str], None]",
        "def getpass(prompt='Password: ', stream=None):",
        'print(f"password={password!r}")',
        "token='{token}', channel='{channel}'",
        'ENV_API_KEY = "ANTHROPIC_API_KEY"',
        'body = {"grant_type": "refresh_token"}',
        "pass `api_key=`, `auth_token=` or `credentials=`",
        '"password": "Password"',
        '"password": "Must be eight characters or more"',
        '"password_hint": "Enter your password again"',
        "'token': 'Token expired, sign in again'",
        "the token is Keyword.Type here",
        "sent_doc = doc[start_token:end_token].as_doc()",
        'get_reversed = lambda token: "".join(reversed(token.text))',
    ],
)
def test_code_that_refers_to_a_secret_is_not_one(line: str) -> None:
    assert secrets_in(line) == []


@pytest.mark.parametrize(
    ("line", "value"),
    [
        # Quoted: to the closing quote, whatever it holds.
        ('password = "correct horse battery staple"', "correct horse battery staple"),
        ('"password": "correct horse battery staple"', "correct horse battery staple"),
        ("passphrase: 'orbit velvet canyon maple'", "orbit velvet canyon maple"),
        ("db_pass: 'A,.:-¨@*¿?!'", "A,.:-¨@*¿?!"),
        ("api_key = 'q8{z}|<x>,Lm;P9'", "q8{z}|<x>,Lm;P9"),
        ('my_password = @"xK9#mP2qLz";', "xK9#mP2qLz"),
        ('password := "Tr0ub4dor&3"', "Tr0ub4dor&3"),
        ('db2_password = "astring"', "astring"),
        # Comparisons, either way round.
        ('if (api_key != "xK9#mP2qLz") {', "xK9#mP2qLz"),
        ('if ("xK9#mP2qLz" === secret) {', "xK9#mP2qLz"),
        ('if ("hunter2!x" == self.password):', "hunter2!x"),
        # Environment files and YAML: bare words are values there.
        ("DB_PASSWORD=SuperSecret", "SuperSecret"),
        ("password: SuperSecret", "SuperSecret"),
        ("my password is SuperSecret", "SuperSecret"),
        # Longer names of a password, and short ones.
        ("dbpwd=$omespeci@!ch@r$", "$omespeci@!ch@r$"),
        ('newpassword = "Winter2025!"', "Winter2025!"),
        (
            "gh_pw := abcdef0123456789abcdef0123456789abcdef01",
            "abcdef0123456789abcdef0123456789abcdef01",
        ),
        # Azure Service Bus / IoT Hub: a 32-byte key after SharedAccessKey.
        (
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=app;"
            "SharedAccessKey=+Fq4wg3tlS913jrz+Sbz4Qn/Ku7x2DZ/BIub6+myvI=",
            "+Fq4wg3tlS913jrz+Sbz4Qn/Ku7x2DZ/BIub6+myvI=",
        ),
        # Code with a random value that has a dot or a bracket in it.
        (
            "token = MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
            "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs",
        ),
        ("pwd: hZ9Ywoag0(", "hZ9Ywoag0("),
        # In brackets, a value that is no name closing a slice.
        ("[password: Tr0ub4dor&3]", "Tr0ub4dor&3"),
        ("password=zuk8URDpqs(tf", "zuk8URDpqs(tf"),
    ],
)
def test_a_literal_after_a_secret_key_is_found_whole(line: str, value: str) -> None:
    assert secrets_in(line) == [value]


@pytest.mark.parametrize(
    "token",
    [
        "hvs.CAESIJlWnqC6n3W0pY0sH2tq9l1Y3qG4n9v0kB2tq9l1Y3qG4n9v0kB2",
        "glcbt-64_Zx9YqW3rT7uVb2NmKp0L",
        "glsoat-Zx9YqW3rT7uVb2NmKp0Lq8",
        "glsa_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6_0a1b2c3d",
        "7213808861:AAH1bjqpKKW3maRSPAxzIU-0v6xNuq2-NjQ",
        "sq0csp-Zx9YqW3rT7uVb2NmKp0Lq8Wm4Zx9YqW3rT7uV",
        "AVNS_4Yt6Gdnjcs8ivIlYSFU",
        "343ea45721923ed956e2b38c31db76ab-us21",
        "ABSKQmVkcm9ja0FQSUtleS1" + "Zx9YqW3rT7uVb2NmKp0L" * 6,
        "pypi-AgENdGVzdC5weXBpLm9yZwIkN2YxOWZhOWEtY2FjYS00MGZhLTj2MGEtODFjMnE2MjdmMzY0",
    ],
)
def test_provider_tokens_by_their_documented_prefix(token: str) -> None:
    text = f"deploy with {token} tonight"
    assert [text[f.start : f.end] for f in detect(text)] == [token]


def test_an_ssh_public_key_is_not_a_secret() -> None:
    key = "lJzRc1YdHaAA2KCNJJ1tkYwF/+mKK6Ygw0NGe170Xu592euJv2wYUtBlV8z+qnlcNQSnIYVTkLWntUO1F8j8rQ=="
    assert secrets_in(f"PublicKey: ssh-rsa {key}") == []
    assert secrets_in(f"AccountKey={key}") == [key]


_KEYS = ("password", "api_key", "secret", "db_pwd", "auth_token", "client_secret")
_OPERATORS = (" = ", "=", ": ", " := ", " => ", " == ")
_VALUE_CHARS = "".join(c for c in string.printable if c not in "\"'`\n\r\x0b\x0c") + "é€¿"


@given(
    key=st.sampled_from(_KEYS),
    operator=st.sampled_from(_OPERATORS),
    quote=st.sampled_from("\"'`"),
    value=st.text(_VALUE_CHARS, min_size=1, max_size=80),
    before=st.sampled_from(("", "x ", "if (", "{", "  ")),
    after=st.sampled_from(("", ";", ")", ", ok", "}")),
)
def test_a_quoted_value_is_never_reported_in_part(
    key: str, operator: str, quote: str, value: str, before: str, after: str
) -> None:
    """Containment: a finding inside a quoted value after a secret's key covers all of
    it, so no part of the value reaches the model raw next to a token."""
    text = f"{before}{key}{operator}{quote}{value}{quote}{after}"
    start = len(before) + len(key) + len(operator) + 1
    end = start + len(value)
    for finding in detect(text):
        if finding.kind in SECRET_KINDS and finding.start < end and start < finding.end:
            assert (finding.start, finding.end) == (start, end), text


_NAMES = (
    "self",
    "config",
    "settings",
    "os",
    "environ",
    "get",
    "client",
    "token",
    "password",
    "secret",
    "api_key",
    "request",
    "form",
    "value",
    "auth",
    "headers",
    "decode",
    "b64encode",
    "utf8",
    "x509",
    "Credentials",
    "SECRET_KEY",
)


@st.composite
def _expressions(draw: st.DrawFn) -> str:
    expr = ".".join(draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4)))
    for _ in range(draw(st.integers(0, 2))):
        call = draw(st.sampled_from(("", "name", '"KEY"', "0", "-1", "a, b", "key=value")))
        index = draw(st.sampled_from(("i", '"KEY"', "0", "-1", "1:", ":-1")))
        member = draw(st.sampled_from(_NAMES))
        expr += draw(st.sampled_from((f"({call})", f"[{index}]", f".{member}")))
    return expr


@given(key=st.sampled_from(_KEYS), operator=st.sampled_from((" = ", "=")), expr=_expressions())
def test_an_expression_after_a_secret_key_is_not_reported(
    key: str, operator: str, expr: str
) -> None:
    """A name, a qualified name, a call or a subscript made of words is code."""
    text = f"{key}{operator}{expr}"
    if "." not in expr and "(" not in expr and "[" not in expr and any(c.isdigit() for c in expr):
        return  # a bare name with digits ("x509") can be a password: not this property
    assert secrets_in(text) == [], text


def test_random_values_with_a_dot_or_bracket_are_still_found() -> None:
    """The other side of the code rule, measured on 2,000 random values: a name is made
    of words, a random value is not. A value that happens to read like a name is
    missed; fewer than 1 in 200 may be."""
    rng = random.Random(20261207)
    alphabet = string.ascii_letters + string.digits
    missed = total = 0
    while total < 2000:
        parts = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(6, 30)))
            for _ in range(rng.randint(2, 3))
        ]
        value = rng.choice(".([").join(parts)
        digits = sum(c.isdigit() for c in value)
        if digits < 2 or value.islower() or value.isupper() or not value[0].isalpha():
            continue
        total += 1
        missed += not secrets_in(f"token = {value}")
    assert missed / total < 0.005, missed


@pytest.mark.parametrize(
    "source",
    [
        "class Settings(BaseModel):\n    client_secret: ClientSecret\n    password: SecretStr\n",
        "from cryptography import x\n\ndef sign(\n    private_key: PKCS7PrivateKeyTypes,\n",
        "import httpx\n\nclass Session:\n    client_secret: SessionClientSecret\n",
        'def create(client_secret):\n    """Args:\n        client_secret: Configuration options'
        ' for the secret.\n    """\n',
    ],
)
def test_a_type_annotation_in_python_source_is_not_a_secret(source: str) -> None:
    assert secrets_in(source) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # YAML: the same line is a value; no line of the text is Python's own.
        ("db:\n  password: SuperSecret\n", "SuperSecret"),
        ("auth:\n  client_secret: ClientSecretValue\n", "ClientSecretValue"),
        # In Python source a name with digits at its end is no type's.
        ("import os\npassword: Password123\n", "Password123"),
    ],
)
def test_the_same_line_outside_python_source_is_a_value(text: str, value: str) -> None:
    assert secrets_in(text) == [value]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # A YAML mapping's plain scalar runs to the line's end: the whole passphrase.
        (
            "db:\n  user: app\n  password: correct horse battery staple\n",
            "correct horse battery staple",
        ),
        ("user: bob\ndb_password: tiger lily moon 42 # rotated\n", "tiger lily moon 42"),
        ("- name: prod\n  password: Hunter two words\n", "Hunter two words"),
        # A literal after a type annotation is a default value, not a type.
        ("class Settings:\n    password: str = 'xK9#mm2Lqq'\n", "xK9#mm2Lqq"),
        ('api_key: Optional[str] = "Zq8vN2kL0pX7Wm"', "Zq8vN2kL0pX7Wm"),
        ('secret: str | None = "Zq8vN2kL0pX7"', "Zq8vN2kL0pX7"),
    ],
)
def test_a_passphrase_or_a_default_is_found_whole(text: str, value: str) -> None:
    assert secrets_in(text) == [value]


@pytest.mark.parametrize(
    "text",
    [
        # One line alone reads as prose as often as YAML: the first word is too short.
        "password: reset it tomorrow",
        # A message under the key, in YAML.
        "user: bob\npassword: Must be 8 characters or more\n",
        # Types in Python, whose "else:" lines look like a mapping's.
        "def f(\n    user: str,\n    password: str | None,\n):\n    if x:\n        pass\n",
        "class A:\n    password: bytes | str\n    user: str\n",
        # A lowercase name holding a secret's word names a field, a header, a metric.
        'OUTPUT_TOKEN: Final = "gen_ai.server.time_per_output_token"',
        'TOKEN_HEADER = "x-auth-token"',
        'def f(password: str = "changeme"):',
    ],
)
def test_what_only_looks_like_a_passphrase_or_a_default_is_left(text: str) -> None:
    assert secrets_in(text) == []


# Forms of the cases in gitleaks' generic-rule tests (cmd/generate/config/rules/
# generic.go): the values here are this file's own.
_VALUE = "Zf3D0LXCM3EIMbgJpUNnkRtO"


@pytest.mark.parametrize(
    "line",
    [
        # camelCase names, as Java, Go, C#, Kotlin and JavaScript write them.
        f'githubToken = "{_VALUE}"',
        f'String stripeSecretKey = "{_VALUE}";',
        f"slackToken: {_VALUE}",
        f'  "genericToken" => "{_VALUE}"',
        f"$genericToken .= '{_VALUE}'",
        f'var genericToken string = "{_VALUE}"',
        # Make's and shells' assignments, a number ending the name, the short "creds".
        f'GENERIC_TOKEN ?= "{_VALUE}"',
        f"API_TOKEN += {_VALUE}",
        f'some_api_token_123 = "{_VALUE}"',
        f"creds = {_VALUE}",
        # Two string arguments of a call: the secret's name and its value.
        f'System.setProperty("GENERIC_TOKEN", "{_VALUE}")',
        f'utils.GetEnvOrDefault("api_token", "{_VALUE}")',
        # An XML element named after the secret, on one line or three.
        f"<apiKey>{_VALUE}</apiKey>",
        f"<genericToken>\n    {_VALUE}\n</genericToken>",
        "<password>xK9#mm2Lqq</password>",
        "<password>SuperSecret</password>",
    ],
)
def test_a_secret_under_any_spelling_of_its_name_is_found(line: str) -> None:
    value = next((v for v in ("xK9#mm2Lqq", "SuperSecret") if v in line), _VALUE)
    assert secrets_in(line) == [value]


@pytest.mark.parametrize(
    "line",
    [
        # Tokens that are no secret: a page's place, a request's idempotency, a lock.
        f'nextPageToken = "{_VALUE}"',
        f'"ClientToken": "{_VALUE}"',
        f'"LockToken": "{_VALUE}"',
        f'publicKeyToken="{_VALUE}"',
        f"csrf-token={_VALUE}",
        # A token's or a key's name as the value, in a paginator's description.
        '"output_token": "NextToken",',
        # Lists and tuples of names, and positional arguments that are not a pair.
        "defaults = dict.fromkeys(['username', 'password', 'repository'], '')",
        "deps = ['nsubj:pass', 'aux:pass', 'ROOT']",
        ">>> Url('http', 'username:password', 'host.com', 80)",
        # A template, a call with keyword arguments, an empty value before the next key.
        'creds = " --username=%s --password=%s" % (user, pw)',
        'tmp_token = Token(type="", tag="", nesting=0)',
        "GITHUB_API_KEY=\nDYNATRACE_API_KEY=",
        "snowflake.password=\njdbc.snowflake.url=",
        '"Credentials": ("credentials", "Credentials")',
        # A time where a secret's name stands, and a placeholder in angle brackets.
        '"lastModifiedSecret": 1556311319.069,',
        '"ImportToken": "<import token base64 encoded data>",',
    ],
)
def test_what_names_a_secret_without_holding_one_is_left(line: str) -> None:
    assert secrets_in(line) == []


@pytest.mark.parametrize(
    ("command", "secret"),
    [
        # curl's credentials, as people paste commands (forms of gitleaks' curl tests).
        ("curl --cacert ca.crt -u elastic:P@ssw0rd$1 https://localhost:9200", "P@ssw0rd$1"),
        (
            "curl -X POST https://h:11222/x \\\n  -d 'world' \\\n  -u developer:yqDVtkqPECriaLRi",
            "yqDVtkqPECriaLRi",
        ),
        ('curl -u "sk9Lm2xQ7vT4rB1n:" https://api.example.com', "sk9Lm2xQ7vT4rB1n"),
        ("curl -s --user 'api:d2LkV78zLx!t' https://api.example.com/v2/messages", "d2LkV78zLx!t"),
        ("curl --user kevin:'pRf7vG2h1L8nQkW9' -iX PATCH", "pRf7vG2h1L8nQkW9"),
        # An Authorization header's credential after Token, Api-Token or no scheme.
        (
            'curl -H "Authorization: Token 22cb987851bc5659229114c62e60c79abd0d2c08"',
            "22cb987851bc5659229114c62e60c79abd0d2c08",
        ),
        (
            "curl --header 'Authorization:  5eb4223e-5008-46e5-be67-c7b8f2732305'",
            "5eb4223e-5008-46e5-be67-c7b8f2732305",
        ),
        ('curl -L -H "Authorization: sha256~bRLFnzd5@=-.a+/hgdS"', "sha256~bRLFnzd5@=-.a+/hgdS"),
    ],
)
def test_credentials_in_a_curl_command_are_found(command: str, secret: str) -> None:
    assert secrets_in(command) == [secret]


@pytest.mark.parametrize(
    "command",
    [
        "curl -i -u 'test:test'",
        'curl -sL --user "$1:$2" "$3" > "$4"',
        "curl -u <user:password> https://test.com/endpoint",
        'curl -u "${username}":"${password}"',
        'curl -X POST --user "$(cat ./login.txt):$(cat ./password.txt)"',
        "curl http://127.0.0.1:5000/file --user user:pass --digest",
        'curl -u "myusername" http://localhost:15130/api/check_user/',
        'curl -X GET -H "apikey: $API_KEY"',
        'curl -H "Authorization: Bearer <Openverse API token>"',
        "the authorization endpoint returns a code",
    ],
)
def test_what_stands_for_a_curl_credential_is_left(command: str) -> None:
    assert secrets_in(command) == []
