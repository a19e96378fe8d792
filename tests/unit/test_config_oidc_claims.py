"""An OIDC producer's `audience` and `subject` are compared by IAM exactly as written (`StringEquals` in the role's
trust policy), so validation refuses what no token can carry or what IAM does not compare as text, and nothing
a real provider issues (review s9, "remains": both fields had no check but non-empty).

What the values may hold: IAM's condition keys `<issuer host>:aud` and `<issuer host>:sub` are the token's claims
as the provider issues them. IAM's client id (the audience a provider is registered with) is botocore's
`clientIDType`: 1-255 characters, no pattern. GitHub's subject is `repo:<owner>/<repo>:ref:refs/heads/<branch>`,
`...:environment:<name>`, `...:pull_request` or a custom template (`job_workflow_ref:...`); git branch names may
hold `#`, `@`, `+`, `$` and non-ASCII letters, and environment names spaces. Auth0's subjects hold `|`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bridge.config import BridgeConfig, ConfigError

DEV = Path(__file__).resolve().parents[2] / "config" / "dev.yaml"
OIDC_PRODUCER = 1  # payment-service in config/dev.yaml
GITHUB = "token.actions.githubusercontent.com"
SUBJECT = "repo:example-org/payment-service:ref:refs/heads/main"


def _doc(**oidc: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEV.read_text())
    doc["producers"][OIDC_PRODUCER]["oidc"].update(oidc)
    return doc


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        BridgeConfig.from_dict(doc)
    return info.value.problems


REAL_SUBJECTS = [
    SUBJECT,
    "repo:octo-org/octo-repo:environment:Production EU",  # a GitHub environment name with a space inside
    "repo:octo-org/octo-repo:pull_request",
    "repo:octo-org/octo-repo:ref:refs/tags/v1.2.3",
    "repo:octo-org/octo-repo:ref:refs/heads/#2-bit-ref@fix+x$1",  # git allows # @ + $ in a branch name
    "repo:octo-org/octo-repo:ref:refs/heads/feat/add-機能追加",  # and non-ASCII letters
    "repo:octo-org/octo-repo:ref:refs/heads/fonctionnalité",
    "repo:octo-org/octo-repo:ref:refs/heads/\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # ZWNJ (Persian)
    "repo:octo-org/octo-repo:ref:refs/heads/fix-\U0001f469\u200d\U0001f4bb",  # ZWJ in an emoji sequence
    "repo:octo-org/octo-repo:ref:refs/heads/fix-\U0001fae8",  # an emoji of Unicode 15, unknown to Python 3.11
    "repo:octo-org/octo-repo:environment:\u200f\u05e4\u05e8\u05d5\u05d3\u05e7\u05e9\u05df",  # RLM, Hebrew
    "repo:octo-org/octo-repo:job_workflow_ref:octo-org/octo-repo/.github/workflows/deploy.yml@refs/heads/main",
    "project_path:mygroup/myproject:ref_type:branch:ref:main",  # GitLab
    "system:serviceaccount:payments:producer",  # an EKS service account
    "auth0|633c9a79c4920862610fa",
    "ad|Mozilla-LDAP-Dev|gene",
    "00u1abcd2EFGHijk3l4",  # Okta
]
REAL_AUDIENCES = [
    "sts.amazonaws.com",
    "api://AzureADTokenExchange",
    "xRFzU2bj7Lrbo3875aXwyxIArdkq1AOT",
    "us-east-1:12345678-corner-cafe-123456790ab",
    "https://example.com/kafka-bridge",
]


@pytest.mark.parametrize("subject", REAL_SUBJECTS)
def test_a_subject_a_provider_issues_is_taken_as_written(subject: str) -> None:
    producer = BridgeConfig.from_dict(_doc(subject=subject)).producers[OIDC_PRODUCER]
    assert producer.oidc is not None
    assert producer.oidc.subject == subject


@pytest.mark.parametrize("audience", REAL_AUDIENCES)
def test_an_audience_a_provider_issues_is_taken_as_written(audience: str) -> None:
    producer = BridgeConfig.from_dict(_doc(audience=audience)).producers[OIDC_PRODUCER]
    assert producer.oidc is not None
    assert producer.oidc.audience == audience


@pytest.mark.parametrize("field", ["subject", "audience"])
@pytest.mark.parametrize("around", ["{}\n", "{} ", " {}", "\t{}", "{}\r\n"],
                         ids=["trailing-newline", "trailing-space", "leading-space", "leading-tab", "crlf"])
def test_whitespace_around_a_claim_is_refused_as_the_other_fields_are(field: str, around: str) -> None:
    # given the value as a YAML `|` block (or a stray space) gives it
    valid = SUBJECT if field == "subject" else "sts.amazonaws.com"
    value = around.format(valid)

    # then one problem, the other fields' message word for word
    assert _problems(_doc(**{field: value})) == [
        f"producers[{OIDC_PRODUCER}].oidc.{field}: {value!r} has whitespace around it (a YAML `|` or `>` block keeps "
        "the final newline). Fix: remove it, or write the block as `|-`"
    ]


@pytest.mark.parametrize(("field", "value"), [
    ("subject", "repo:example-org/payment-service\n:ref:refs/heads/main"),
    ("subject", "repo:example-org/payment-service:ref:refs/heads/main\x00"),
    ("subject", "repo:example-org/payment-service:ref:refs/heads/\u200bmain"),  # zero-width space
    ("subject", "repo:example-org/payment-service:environment:Production\u00a0EU"),  # no-break space
    ("subject", "repo:example-org/payment-service:ref:refs/heads/main\u2028x"),  # line separator
    ("audience", "sts.amazon\taws.com"),
    ("audience", "sts.amazonaws.com\x7f"),
    ("subject", "repo:example-org/payment-service:ref:refs/heads/\ufeffmain"),  # BOM, a zero-width no-break space
    ("subject", "repo:example-org/payment-service:environment:Production\u3000EU"),  # ideographic space
    ("subject", "repo:example-org/payment-service:environment:Production\u2007EU"),  # figure space
    ("subject", "repo:example-org/payment-service:ref:refs/heads/main\u2029x"),  # paragraph separator
    ("subject", "repo:example-org/payment-service:ref:refs/heads/main\x85x"),  # NEL
    ("audience", "sts.amazonaws.com\ud800x"),  # a lone surrogate (JSON's "\ud800"): no UTF-8 token holds it
    ("subject", "repo:example-org/payment-service:ref:refs/heads/ma\u00adin"),  # soft hyphen
    ("subject", "repo:example-org/payment-service:ref:refs/heads/ma\u2060in"),  # word joiner
    ("subject", "repo:example-org/payment-service:ref:refs/heads/ma\u2062in"),  # invisible times
    ("subject", "repo:example-org/payment-service:ref:refs/heads/ma\u180ein"),  # Mongolian vowel separator
], ids=["newline-inside", "nul", "zero-width", "no-break-space", "line-separator", "tab-inside", "del", "bom",
        "ideographic-space", "figure-space", "paragraph-separator", "nel", "surrogate", "soft-hyphen", "word-joiner",
        "invisible-times", "mongolian-vowel-separator"])
def test_an_invisible_or_control_character_is_refused_naming_it(field: str, value: str) -> None:
    problems = _problems(_doc(**{field: value}))

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"producers[{OIDC_PRODUCER}].oidc.{field}: "), problems
    assert "control or invisible character" in problems[0]
    assert "Fix: " in problems[0]
    assert "\n" not in problems[0]


@pytest.mark.parametrize("field", ["subject", "audience"])
@pytest.mark.parametrize("control", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068",
                                     "\u2069"])
def test_a_bidi_control_is_refused_as_text_that_displays_as_another(field: str, control: str) -> None:
    # `refs/heads/` + U+202E + `niam` displays as `refs/heads/main` ("Trojan Source"); git takes it as a branch name
    value = f"repo:example-org/payment-service:ref:refs/heads/{control}niam" if field == "subject" \
        else f"sts.{control}amazonaws.com"
    problems = _problems(_doc(**{field: value}))

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"producers[{OIDC_PRODUCER}].oidc.{field}: "), problems
    assert "bidirectional control" in problems[0]
    assert "Fix: " in problems[0]


@pytest.mark.parametrize(("field", "value"), [
    ("subject", f"${{{GITHUB}:sub}}"),  # compared with itself: every subject GitHub issues
    ("subject", "repo:example-org/payment-service:ref:refs/heads/${BRANCH}"),  # a template left unexpanded
    ("audience", f"${{{GITHUB}:aud}}"),
], ids=["subject-self", "subject-placeholder", "audience-self"])
def test_a_policy_variable_is_refused(field: str, value: str) -> None:
    problems = _problems(_doc(**{field: value}))

    assert len(problems) == 1, problems
    assert problems[0].startswith(f"producers[{OIDC_PRODUCER}].oidc.{field}: "), problems
    assert "policy variable" in problems[0]
    assert "Fix: " in problems[0]


@pytest.mark.parametrize(("field", "value"), [
    ("subject", "repo:example-org/*"),  # GitHub's StringLike example, copied into a StringEquals condition
    ("subject", "repo:example-org/payment-service:*"),
    ("subject", "repo:example-org/payment-service:ref:refs/heads/*"),
    ("subject", "repo:example-org/payment-service:ref:refs/heads/release-?"),
    ("subject", "*"),
    ("audience", "*"),
    ("audience", "sts.amazonaws.co?"),
], ids=["org", "repo", "branch", "question-mark", "only-star", "audience-star", "audience-question-mark"])
def test_a_wildcard_is_refused_as_compared_as_written(field: str, value: str) -> None:
    # given a wildcard, which the role's StringEquals compares as a literal `*` or `?`: no token carries it
    # (git refuses both in a branch name: `git check-ref-format --branch 'feat*'` fails)
    problems = _problems(_doc(**{field: value}))

    # then one line naming the field, the reason and the fix
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"producers[{OIDC_PRODUCER}].oidc.{field}: {value!r} contains "), problems
    assert "compared as written (StringEquals): a wildcard matches only itself. Fix: " in problems[0]
    if field == "subject":
        assert "Fix: the exact subject" in problems[0]


def test_a_yaml_block_scalar_subject_is_refused() -> None:
    # given the config file as written, with `|` where `|-` was meant
    text = DEV.read_text().replace(f"      subject: {SUBJECT}\n", f"      subject: |\n        {SUBJECT}\n", 1)
    assert yaml.safe_load(text)["producers"][OIDC_PRODUCER]["oidc"]["subject"] == SUBJECT + "\n"

    # then
    assert [p.split(":")[0] for p in _problems(yaml.safe_load(text))] == [f"producers[{OIDC_PRODUCER}].oidc.subject"]
