from __future__ import annotations

import pytest

from receiver.inbound.signatures import SlackVerdict, verify_jira, verify_pagerduty, verify_slack
from tests.support.vendor_signing import sign_jira, sign_pagerduty, sign_slack

# --- Vectors ----------------------------------------------------------------------------

# Slack's own worked example, "Verifying requests from Slack"
# (docs.slack.dev/authentication/verifying-requests-from-slack): a slash command body.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_NOW = float(SLACK_TIMESTAMP) + 10

# PagerDuty's docs show a two-signature header but publish no secret and body for it. This
# vector is PagerDuty's own, from the tests of its Go client (PagerDuty/go-pagerduty,
# webhookv3/webhookv3_test.go): the signature verifies, the "mismatch" one does not.
PD_GO_SECRET = "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK"
PD_GO_BODY = (
    b'{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK","event_type":"incident.priority_updated",'
    b'"resource_type":"incident","occurred_at":"2021-04-26T17:36:27.458Z","agent":{"html_url":'
    b'"https://acme.pagerduty.com/users/PLH1HKV","id":"PLH1HKV","self":'
    b'"https://api.pagerduty.com/users/PLH1HKV","summary":"Tenex Engineer","type":'
    b'"user_reference"},"client":null,"data":{"id":"PGR0VU2","type":"incident","self":'
    b'"https://api.pagerduty.com/incidents/PGR0VU2","html_url":'
    b'"https://acme.pagerduty.com/incidents/PGR0VU2","number":2,"status":"triggered","title":'
    b'"A little bump in the road","service":{"html_url":'
    b'"https://acme.pagerduty.com/services/PF9KMXH","id":"PF9KMXH","self":'
    b'"https://api.pagerduty.com/services/PF9KMXH","summary":"API Service","type":'
    b'"service_reference"},"assignees":[{"html_url":"https://acme.pagerduty.com/users/PTUXL6G",'
    b'"id":"PTUXL6G","self":"https://api.pagerduty.com/users/PTUXL6G","summary":"User 123",'
    b'"type":"user_reference"}],"escalation_policy":{"html_url":'
    b'"https://acme.pagerduty.com/escalation_policies/PUS0KTE","id":"PUS0KTE","self":'
    b'"https://api.pagerduty.com/escalation_policies/PUS0KTE","summary":"Default","type":'
    b'"escalation_policy_reference"},"teams":[{"html_url":'
    b'"https://acme.pagerduty.com/teams/PFCVPS0","id":"PFCVPS0","self":'
    b'"https://api.pagerduty.com/teams/PFCVPS0","summary":"Engineering","type":'
    b'"team_reference"}],"priority":{"html_url":'
    b'"https://acme.pagerduty.com/account/incident_priorities","id":"PSO75BM","self":'
    b'"https://api.pagerduty.com/priorities/PSO75BM","summary":"P1","type":'
    b'"priority_reference"},"urgency":"high","conference_bridge":{"conference_number":1000,'
    b'"conference_url":"https://example.com"},"resolve_reason":null}}}'
)
PD_GO_SIGNATURE = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd"
PD_GO_MISMATCH = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5"

# By hand, from PagerDuty's "Verifying Signatures": the signature is the Base16 (hex)
# SHA-256 HMAC of the entire raw body keyed by the subscription secret, prefixed "v1=";
# several are comma-separated during a rotation; one match is enough. Digests made with
# `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"`, not with Python.
PD_BODY = (
    b'{"event":{"id":"01HJ0TEST","event_type":"incident.acknowledged","resource_type":'
    b'"incident","data":{"id":"PGR0VU2","incident_key":"jr-checkout-7f3a"}}}'
)
PD_NEW, PD_OLD = "pd-secret-new", "pd-secret-old"
PD_NEW_HEX = "9ebf73a50dfa9c4fc097746ba1f29c8aa5f524d16d244b572349948f923182f7"
PD_OLD_HEX = "b3eda04aa6d5adc41915348d6a8cd279b12a74098c87f07342ffa363055df612"

# By hand, from Atlassian's "Secure admin webhooks" (and Data Center's "Managing
# webhooks"): X-Hub-Signature is "sha256=" + hex HMAC-SHA256 of the raw body keyed by the
# webhook's secret. Atlassian publishes no vector; digests made with openssl as above.
JIRA_BODY = (
    b'{"timestamp":1700000000000,"webhookEvent":"jira:issue_updated","issue":{"key":"OPS-42"}}'
)
JIRA_NEW, JIRA_OLD = "jira-secret-new", "jira-secret-old"
JIRA_NEW_HEX = "d72868efb8bb80c2c66a2f8a61ca5da49ddb70357a3a7091deae88d7527358e0"
JIRA_OLD_HEX = "7e7c6a8b9db464541872f03e75cc6172835f7b5022940d99089033fbf52c007d"
JIRA_NEW_SHA1_HEX = "ad1e201462444dc5cc9545ca66071f42feca58c9"


def flip_last(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


# --- The signers used by fakes match the vendors' vectors ------------------------------


def test_signers_reproduce_the_vendor_vectors() -> None:
    assert sign_slack(SLACK_BODY, SLACK_SECRET, SLACK_TIMESTAMP) == SLACK_SIGNATURE
    assert sign_pagerduty(PD_GO_BODY, PD_GO_SECRET) == PD_GO_SIGNATURE
    assert sign_pagerduty(PD_BODY, PD_NEW, PD_OLD) == f"v1={PD_NEW_HEX},v1={PD_OLD_HEX}"
    assert sign_jira(JIRA_BODY, JIRA_NEW) == f"sha256={JIRA_NEW_HEX}"


# --- PagerDuty ---------------------------------------------------------------------------


def test_pagerduty_go_client_vector_verifies() -> None:
    assert verify_pagerduty(PD_GO_BODY, PD_GO_SIGNATURE, [PD_GO_SECRET])
    assert not verify_pagerduty(PD_GO_BODY, PD_GO_MISMATCH, [PD_GO_SECRET])


def test_pagerduty_hand_vector_verifies() -> None:
    assert verify_pagerduty(PD_BODY, f"v1={PD_NEW_HEX}", [PD_NEW])


def test_pagerduty_bad_signature() -> None:
    assert not verify_pagerduty(PD_BODY, flip_last(f"v1={PD_NEW_HEX}"), [PD_NEW])


def test_pagerduty_wrong_secret() -> None:
    assert not verify_pagerduty(PD_BODY, f"v1={PD_NEW_HEX}", ["not-the-secret"])


def test_pagerduty_body_changed_after_signing() -> None:
    assert not verify_pagerduty(PD_BODY + b" ", f"v1={PD_NEW_HEX}", [PD_NEW])


def test_pagerduty_rotation_header_second_signature_matches() -> None:
    header = f"v1={PD_NEW_HEX},v1={PD_OLD_HEX}"

    assert verify_pagerduty(PD_BODY, header, [PD_OLD])
    assert verify_pagerduty(PD_BODY, f"v1={'0' * 64}, v1={PD_NEW_HEX}", [PD_NEW])


def test_pagerduty_rotation_only_the_old_configured_secret_matches() -> None:
    assert verify_pagerduty(PD_BODY, f"v1={PD_OLD_HEX}", [PD_NEW, PD_OLD])


def test_pagerduty_other_versions_are_ignored() -> None:
    assert not verify_pagerduty(PD_BODY, f"v2={PD_NEW_HEX}", [PD_NEW])
    assert not verify_pagerduty(PD_BODY, PD_NEW_HEX, [PD_NEW])
    assert verify_pagerduty(PD_BODY, f"v2=whatever,v1={PD_NEW_HEX}", [PD_NEW])


def test_pagerduty_hex_case_does_not_matter() -> None:
    assert verify_pagerduty(PD_BODY, f"v1={PD_NEW_HEX.upper()}", [PD_NEW])


def test_pagerduty_no_secrets_refuse_everything() -> None:
    assert not verify_pagerduty(PD_BODY, f"v1={PD_NEW_HEX}", [])
    # An empty key is one anyone can sign with: an unset ${ENV} must not open the door.
    assert not verify_pagerduty(PD_BODY, sign_pagerduty(PD_BODY, ""), [""])
    assert verify_pagerduty(PD_BODY, f"v1={PD_NEW_HEX}", ["", PD_NEW])


def test_pagerduty_missing_header() -> None:
    assert not verify_pagerduty(PD_BODY, None, [PD_NEW])
    assert not verify_pagerduty(PD_BODY, "", [PD_NEW])


@pytest.mark.parametrize(
    "header",
    ["v1=", "v1", ",,,", "v1=zz", f"v1 = {PD_NEW_HEX}", f"v1={PD_NEW_HEX[:-2]}", "v1=ü"],
)
def test_pagerduty_malformed_header(header: str) -> None:
    assert not verify_pagerduty(PD_BODY, header, [PD_NEW])


# --- Slack -------------------------------------------------------------------------------


def test_slack_published_example_verifies() -> None:
    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, [SLACK_SECRET], SLACK_NOW)

    assert verdict is SlackVerdict.OK


def test_slack_bad_signature() -> None:
    verdict = verify_slack(
        SLACK_BODY, SLACK_TIMESTAMP, flip_last(SLACK_SIGNATURE), [SLACK_SECRET], SLACK_NOW
    )

    assert verdict is SlackVerdict.BAD_SIGNATURE


def test_slack_wrong_secret() -> None:
    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, ["other"], SLACK_NOW)

    assert verdict is SlackVerdict.BAD_SIGNATURE


def test_slack_the_timestamp_is_signed_too() -> None:
    later = str(int(SLACK_TIMESTAMP) + 1)

    verdict = verify_slack(SLACK_BODY, later, SLACK_SIGNATURE, [SLACK_SECRET], SLACK_NOW)

    assert verdict is SlackVerdict.BAD_SIGNATURE


def test_slack_body_changed_after_signing() -> None:
    verdict = verify_slack(
        SLACK_BODY + b"&x=1", SLACK_TIMESTAMP, SLACK_SIGNATURE, [SLACK_SECRET], SLACK_NOW
    )

    assert verdict is SlackVerdict.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [
        (300, SlackVerdict.OK),
        (-300, SlackVerdict.OK),
        (300.5, SlackVerdict.STALE),
        (301, SlackVerdict.STALE),
        (-301, SlackVerdict.STALE),
        (86_400, SlackVerdict.STALE),
    ],
)
def test_slack_five_minute_window(offset_s: float, expected: SlackVerdict) -> None:
    now_s = float(SLACK_TIMESTAMP) + offset_s

    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, [SLACK_SECRET], now_s)

    assert verdict is expected


def test_slack_stale_is_reported_before_the_signature_is_looked_at() -> None:
    now_s = float(SLACK_TIMESTAMP) + 3600

    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, "v0=forged", [SLACK_SECRET], now_s)

    assert verdict is SlackVerdict.STALE


def test_slack_window_can_be_narrowed() -> None:
    verdict = verify_slack(
        SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, [SLACK_SECRET], SLACK_NOW, window_s=5
    )

    assert verdict is SlackVerdict.STALE
    with pytest.raises(ValueError, match="window_s must be positive"):
        verify_slack(SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, [SLACK_SECRET], 0, 0)


@pytest.mark.parametrize(
    "timestamp",
    [
        None,
        "",
        "abc",
        "1531420618.0",
        " 1531420618",
        "+1531420618",
        "-1531420618",
        "1_531_420_618",
        "١٥٣١٤٢٠٦١٨",
        "9" * 5000,
    ],
)
def test_slack_malformed_timestamp_is_stale_not_bad_signature(timestamp: str | None) -> None:
    verdict = verify_slack(SLACK_BODY, timestamp, SLACK_SIGNATURE, [SLACK_SECRET], SLACK_NOW)

    assert verdict is SlackVerdict.STALE


def test_slack_rotation_only_the_old_configured_secret_matches() -> None:
    verdict = verify_slack(
        SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, ["new-secret", SLACK_SECRET], SLACK_NOW
    )

    assert verdict is SlackVerdict.OK


def test_slack_sends_one_signature_so_a_list_is_refused() -> None:
    # Slack documents exactly one v0= signature; its rotation is on our side (two secrets).
    header = f"v0={'0' * 64},{SLACK_SIGNATURE}"

    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, header, [SLACK_SECRET], SLACK_NOW)

    assert verdict is SlackVerdict.BAD_SIGNATURE


def test_slack_no_secrets_refuse_everything() -> None:
    assert (
        verify_slack(SLACK_BODY, SLACK_TIMESTAMP, SLACK_SIGNATURE, [], SLACK_NOW)
        is SlackVerdict.BAD_SIGNATURE
    )
    forged = sign_slack(SLACK_BODY, "", SLACK_TIMESTAMP)
    assert (
        verify_slack(SLACK_BODY, SLACK_TIMESTAMP, forged, [""], SLACK_NOW)
        is SlackVerdict.BAD_SIGNATURE
    )


def test_slack_missing_signature() -> None:
    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, None, [SLACK_SECRET], SLACK_NOW)

    assert verdict is SlackVerdict.BAD_SIGNATURE


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "v0=",
        SLACK_SIGNATURE.removeprefix("v0="),
        "v1=" + SLACK_SIGNATURE.removeprefix("v0="),
        "V0=" + SLACK_SIGNATURE.removeprefix("v0="),
        SLACK_SIGNATURE + " ",
        "v0=ü",
    ],
)
def test_slack_malformed_signature(signature: str) -> None:
    verdict = verify_slack(SLACK_BODY, SLACK_TIMESTAMP, signature, [SLACK_SECRET], SLACK_NOW)

    assert verdict is SlackVerdict.BAD_SIGNATURE


# --- Jira --------------------------------------------------------------------------------


def test_jira_hand_vector_verifies() -> None:
    assert verify_jira(JIRA_BODY, [], f"sha256={JIRA_NEW_HEX}", [JIRA_NEW])


def test_jira_secret_in_the_url_verifies() -> None:
    assert verify_jira(JIRA_BODY, [JIRA_NEW], None, [JIRA_NEW])


def test_jira_any_reading_of_the_shared_secret_offered_may_match() -> None:
    # The URL's secret as form-decoded and as written, then the header: one match is enough.
    assert verify_jira(JIRA_BODY, ["jira secret new", JIRA_NEW, None], None, [JIRA_NEW])
    assert not verify_jira(JIRA_BODY, ["jira secret new", None, ""], None, [JIRA_NEW])


def test_jira_either_proof_is_enough() -> None:
    assert verify_jira(JIRA_BODY, [JIRA_NEW], f"sha256={'0' * 64}", [JIRA_NEW])
    assert verify_jira(JIRA_BODY, ["wrong"], f"sha256={JIRA_NEW_HEX}", [JIRA_NEW])


def test_jira_bad_signature() -> None:
    assert not verify_jira(JIRA_BODY, [], flip_last(f"sha256={JIRA_NEW_HEX}"), [JIRA_NEW])


def test_jira_wrong_secret() -> None:
    assert not verify_jira(JIRA_BODY, [], f"sha256={JIRA_NEW_HEX}", ["other"])
    assert not verify_jira(JIRA_BODY, ["other"], None, [JIRA_NEW])
    assert not verify_jira(JIRA_BODY, [JIRA_NEW + "x"], None, [JIRA_NEW])


def test_jira_body_changed_after_signing() -> None:
    assert not verify_jira(JIRA_BODY + b"\n", [], f"sha256={JIRA_NEW_HEX}", [JIRA_NEW])


def test_jira_rotation_only_the_old_configured_secret_matches() -> None:
    assert verify_jira(JIRA_BODY, [], f"sha256={JIRA_OLD_HEX}", [JIRA_NEW, JIRA_OLD])
    assert verify_jira(JIRA_BODY, [JIRA_OLD], None, [JIRA_NEW, JIRA_OLD])


def test_jira_sends_one_signature_so_a_list_is_refused() -> None:
    # WebSub's X-Hub-Signature is a single method=signature pair.
    header = f"sha256={'0' * 64},sha256={JIRA_NEW_HEX}"

    assert not verify_jira(JIRA_BODY, [], header, [JIRA_NEW])


def test_jira_no_secrets_refuse_everything() -> None:
    assert not verify_jira(JIRA_BODY, [JIRA_NEW], f"sha256={JIRA_NEW_HEX}", [])
    assert not verify_jira(JIRA_BODY, [""], sign_jira(JIRA_BODY, ""), [""])
    assert not verify_jira(JIRA_BODY, [""], None, [JIRA_NEW])


def test_jira_missing_proof() -> None:
    assert not verify_jira(JIRA_BODY, [], None, [JIRA_NEW])


@pytest.mark.parametrize(
    "header",
    [
        "",
        "sha256",
        "sha256=",
        JIRA_NEW_HEX,
        f"SHA256={JIRA_NEW_HEX}",
        f"sha1={JIRA_NEW_SHA1_HEX}",
        f"sha256= {JIRA_NEW_HEX}",
        "sha256=ü",
    ],
)
def test_jira_malformed_header(header: str) -> None:
    assert not verify_jira(JIRA_BODY, [], header, [JIRA_NEW])
