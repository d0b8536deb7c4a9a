"""A team lead's journeys.yaml, checked at load: what `check` accepts is what serve runs,
and a mistake that would only show in the middle of an incident is said at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ReceiverConfig, check, load, load_journeys, review
from receiver.errors import ConfigError
from tests.conftest import ROOT
from tests.test_config import CHECKOUT, checkout

OPEN = "server: {auth: {allow_open: true}}\n"


@pytest.fixture(autouse=True)
def _no_label_named_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("region", "env", "cluster"):
        monkeypatch.delenv(name, raising=False)


def problems(path: Path) -> list[str]:
    """What serve (and a reload) refuses, checked against a team lead's `check`."""
    with pytest.raises(ConfigError) as refused:
        load_journeys(path, ReceiverConfig())
    said = [str(p) for p in refused.value.problems]
    assert [str(p) for p in check(None, path)] == said
    return said


# -- ${name} in a KPI query is a group label, as the README says, not an environment variable


def test_a_braced_kpi_placeholder_is_a_group_label_not_an_environment_variable(
    tmp_path: Path,
) -> None:
    query = 'sum(rate(orders_total{region="${region}"}[5m]))'
    journeys = checkout(
        tmp_path, f"    kpis: [{{name: orders, query: '{query}', unit: x, bad_when: down}}]\n"
    )
    receiver = tmp_path / "receiver.yaml"
    receiver.write_text(OPEN)
    # A team lead's check, serve (and a reload), the rules and explain agree on the query.
    assert check(None, journeys) == []
    assert check(receiver) == []
    assert load(receiver)[1].journeys[0].kpis[0].query == query
    assert load_journeys(journeys, offline=True).journeys[0].kpis[0].query == query


def test_an_environment_variable_elsewhere_is_still_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JR_HUNT_CHANNEL", "#inc-pay")
    path = tmp_path / "journeys.yaml"
    path.write_text(
        CHECKOUT.replace("{team: payments}", '{team: t, slack_channel: "${JR_HUNT_CHANNEL}"}')
    )
    assert load_journeys(path).journeys[0].owner.slack_channel == "#inc-pay"


# -- run templates: a field no run has fails every run, at the worst moment


def test_a_run_template_naming_a_field_no_run_has_is_refused_at_load(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: Roll back\n"
        "        when: {change_type: deploy, within: 15m}\n"
        "        run:\n"
        "          webhook:\n"
        "            url: https://deploy.example/api/{servce}\n"
        "            body: {to: '{previous_version}', zone: '{zone}'}\n"
        "            secret: s3cret\n",
    )
    said = problems(path)
    assert len(said) == 2, said
    assert said[0].startswith(f"{path}:13: journeys[0].actions[0].run.webhook.url: ")
    assert "{servce}" in said[0] and "(did you mean {service}?)" in said[0]
    assert said[1].startswith(f"{path}:14: journeys[0].actions[0].run.webhook.body: ")
    assert "{zone}" in said[1]


def test_a_run_naming_the_changes_fields_needs_a_change_type(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: Roll back\n"
        "        run:\n"
        "          webhook:\n"
        "            url: https://deploy.example/api/rollback\n"
        "            body: {to: '{previous_version}'}\n"
        "            secret: s3cret\n",
    )
    [said] = problems(path)
    assert "journeys[0].actions[0].run.webhook.body" in said
    assert "when.change_type" in said


def test_a_run_naming_what_every_run_has_is_valid(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: 'Roll back {service} in {region} to {previous_version}'\n"
        "        when: {change_type: deploy, within: 15m}\n"
        "        run:\n"
        "          webhook:\n"
        "            url: 'https://deploy.example/api/{service}?incident={incident_id}'\n"
        "            headers: {X-Priority: '{priority}'}\n"
        "            body: {to: '{previous_version}', from: '{version}', region: '{region}',\n"
        "                   env: '{env}', journey: '{journey}', action: '{action}',\n"
        "                   link: '{incident_url}', literal: '{{x}}'}\n"
        "            secret: s3cret\n"
        "      - id: restart\n"
        "        title: Restart\n"
        "        when: {single_service: true}\n"
        "        run: {webhook: {url: 'https://ops.example/restart/{service}', secret: s}}\n",
    )
    assert check(None, path) == []
    assert load_journeys(path, ReceiverConfig()).journeys[0].actions[0].run is not None


def test_a_title_naming_an_unknown_field_is_refused(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - title: 'Roll back {servce} to {previous_version}'\n"
        "        when: {change_type: deploy}\n",
    )
    [said] = problems(path)
    assert said.startswith(f"{path}:8: journeys[0].actions[0].title: ")
    assert "{servce}" in said


# -- KPI queries Prometheus could never parse


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('sum(rate(x{region="$region"[5m]))', ") at column 32 closes the { at column 11"),
        ('sum(rate(x{region="$region"}[5m])', "unclosed ( at column 4"),
        ('sum(rate(x{region="$region"}[5m])))', "unmatched ) at column 35"),
        ('sum(rate(x{region="$region"}[5m)])', ") at column 32 closes the [ at column 29"),
    ],
)
def test_a_kpi_query_with_unbalanced_brackets_is_refused_at_load(
    tmp_path: Path, query: str, reason: str
) -> None:
    path = checkout(
        tmp_path, f"    kpis: [{{name: orders, query: '{query}', unit: x, bad_when: down}}]\n"
    )
    [said] = problems(path)
    assert said.startswith(f"{path}:7: journeys[0].kpis[0].query: "), said
    assert reason in said
    # `rules` loads the file the same way: it never prints a broken rule.
    with pytest.raises(ConfigError):
        load_journeys(path, offline=True)


def test_brackets_inside_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    query = 'sum(rate(x{path=~"/a(b|c", q="}]"}[5m])) # ( [ {'
    path = checkout(
        tmp_path, f"    kpis: [{{name: orders, query: '{query}', unit: x, bad_when: down}}]\n"
    )
    assert check(None, path) == []


# -- runbook links that no sink or page would ever show as a link


@pytest.mark.parametrize(
    "url", ["runbooks.example.com/checkout", "/wiki/rb-17", "javascript:alert(1)"]
)
def test_a_runbook_url_that_is_not_http_is_refused(tmp_path: Path, url: str) -> None:
    path = checkout(tmp_path, f"    runbooks: [{{title: Payments, url: '{url}'}}]\n")
    [said] = problems(path)
    assert "journeys[0].runbooks[0].url: expected an http:// or https:// URL" in said


# -- action conditions that silently always hold


def test_within_without_a_change_type_is_refused(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    actions:\n      - title: Roll back\n        when: {within: 15m}\n",
    )
    [said] = problems(path)
    assert "journeys[0].actions[0].when.within" in said
    assert "change_type" in said


@pytest.mark.parametrize(
    ("bound", "hint"),
    [("deviation_pct_below: 30", "-30"), ("deviation_pct_above: -20", "20")],
)
def test_a_kpi_bound_on_the_wrong_side_of_zero_is_refused(
    tmp_path: Path, bound: str, hint: str
) -> None:
    path = checkout(
        tmp_path,
        "    kpis: [{name: conversion, query: 'sum(x)', unit: ratio, bad_when: down}]\n"
        "    actions:\n"
        "      - title: Roll back\n"
        f"        when: {{kpi: {{name: conversion, {bound}}}}}\n",
    )
    [said] = problems(path)
    assert "journeys[0].actions[0].when.kpi." in said
    assert f"(did you mean {hint}?)" in said


# -- valid, and yet almost surely a mistake: warned of by `check`, never refused


# A second journey, up to its stages' items.
PAYMENTS = (
    "  - id: payments\n"
    "    name: Payments\n"
    "    weight: 0.9\n"
    "    owner: {team: payments}\n"
    "    stages:\n"
)


def warnings(path: Path) -> list[str]:
    """What `check` warns of in a file serve (and a reload) still accepts."""
    load_journeys(path, ReceiverConfig())
    problems, said = review(None, path)
    assert problems == []
    return [str(w) for w in said]


def test_a_stage_an_earlier_stage_takes_every_alert_of_is_warned_of(tmp_path: Path) -> None:
    # Two journeys claim the payment alerts; a catch-all stage swallows the one after it.
    path = checkout(
        tmp_path,
        PAYMENTS + "      - {id: gateway, weight: 1, match: ['service=\"p\"', 'env=\"prod\"']}\n"
        "      - {id: prod, weight: 1, match: ['env!=\"staging\"']}\n"
        "      - {id: cart, weight: 1, match: ['service=\"cart\"', 'env=\"prod\"']}\n"
        "      - {id: staging, weight: 1, match: ['service=\"cart\"', 'env=\"staging\"']}\n",
    )
    assert warnings(path) == [
        f"{path}:12: journeys[1].stages[0].match: no alert can reach this stage: every alert "
        "it matches is taken first by checkout/payment (line 6), as an alert belongs to the "
        "first stage in file order whose matchers all match",
        f"{path}:14: journeys[1].stages[2].match: no alert can reach this stage: every alert "
        "it matches is taken first by payments/prod (line 13), as an alert belongs to the "
        "first stage in file order whose matchers all match",
    ]


def test_a_stage_whose_matchers_contradict_each_other_is_warned_of(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        PAYMENTS + "      - {id: a, weight: 1,\n"
        "         match: ['env=\"prod\"', 'service=\"a\"', 'env=\"staging\"']}\n"
        "      - {id: b, weight: 1, match: ['service=\"b\"', 'service!~\"a|b\"']}\n"
        "      - {id: c, weight: 1, match: ['service=\"c\"', 'service=~\"c|d\"']}\n",
    )
    assert warnings(path) == [
        f"{path}:13: journeys[1].stages[0].match: no alert can reach this stage: "
        'env="prod" and env="staging" cannot both hold',
        f"{path}:14: journeys[1].stages[1].match: no alert can reach this stage: "
        'service="b" and service!~"a|b" cannot both hold',
    ]


def test_a_matcher_value_that_keeps_its_quotes_is_warned_of(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    runbooks:\n"
        "      - title: Cart\n"
        "        url: https://runbooks.example.com/cart\n"
        '        match: [service=\'cart\', \'service=~"\\"cart.*\\""\', "tier=\'gold"]\n',
    )
    path.write_text(path.read_text().replace("'service=\"p\"'", "service='p'"))
    assert warnings(path) == [
        f"{path}:6: journeys[0].stages[0].match[0]: service=\"'p'\" compares the label with "
        "'p', quotes included (did you mean service=\"p\"?)",
        f"{path}:10: journeys[0].runbooks[0].match[0]: service=\"'cart'\" compares the label "
        "with 'cart', quotes included (did you mean service=\"cart\"?)",
        f'{path}:10: journeys[0].runbooks[0].match[1]: service=~"\\"cart.*\\"" compares '
        'the label with "cart.*", quotes included (did you mean service=~"cart.*"?)',
    ]


def test_a_quoted_regex_that_is_none_without_its_quotes_is_warned_of_all_the_same(
    tmp_path: Path,
) -> None:
    # 'error\' (its closing quote escaped) is a regex of the quoted word; without its
    # quotes it ends in a lone backslash, which is no regex: there is nothing to suggest.
    path = checkout(
        tmp_path,
        "    runbooks:\n"
        "      - title: Errors\n"
        "        url: https://runbooks.example.com/errors\n"
        "        match: ['message=~\"''error\\\\''\"']\n",
    )
    assert warnings(path) == [
        f"{path}:10: journeys[0].runbooks[0].match[0]: message=~\"'error\\\\'\" compares the "
        "label with 'error\\', quotes included"
    ]


def test_an_slo_objective_written_as_a_ratio_is_warned_of(tmp_path: Path) -> None:
    path = checkout(tmp_path, "    slo: {degraded_at: P2, objective: 0.999}\n")
    path.write_text(path.read_text() + "unmapped: {slo: {objective: 99.5}}\n")
    assert warnings(path) == [
        f"{path}:7: journeys[0].slo.objective: is in percent: 0.999 lets the journey be "
        "degraded 99.001% of the window and still meet it (did you mean 99.9?)"
    ]


def test_a_value_a_hash_turned_into_a_comment_is_warned_of(tmp_path: Path) -> None:
    # Valid (the channel is optional), and the journey's incidents would go to the
    # default Slack channel.
    path = checkout(tmp_path, "")
    path.write_text(
        path.read_text().replace(
            "owner: {team: payments}",
            "owner:\n      team: payments  # the payments squad\n      slack_channel: #inc-pay",
        )
    )
    assert load_journeys(path).journeys[0].owner.slack_channel is None
    assert warnings(path) == [
        f"{path}:7: journeys[0].owner.slack_channel: has no value: YAML reads a # after a "
        "space as the start of a comment, so the text after it is dropped; quote the value "
        'to keep it ("#…")'
    ]


def test_the_example_journeys_give_no_warning() -> None:
    assert review(None, ROOT / "config" / "journeys.yaml") == ([], [])


def test_an_assist_journey_whose_actions_nobody_may_run_is_warned_of(tmp_path: Path) -> None:
    hook = "{url: 'https://deploy.example/rollback', secret: s3cret}"
    action = f"{{id: rb, title: Roll back, run: {{webhook: {hook}}}}}"
    rest = f"    automation: assist\n    actions: [{action}]\n"
    path = checkout(tmp_path, rest)
    assert warnings(path) == [
        f"{path}:7: journeys[0].automation: assist offers Run to owner.responders only, and "
        "it names no one: every press is refused (name the Slack user ids or e-mails of who "
        "may run them)"
    ]
    path.write_text(path.read_text().replace("{team: payments}", "{team: p, responders: [U1]}"))
    assert warnings(path) == []


def test_a_change_type_that_is_a_misspelt_known_type_is_warned_of(tmp_path: Path) -> None:
    # Event types are open (a tool may send its own words), so any type is valid; one a
    # letter off a type the API documents is a typo that no event will ever match.
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - {title: Roll back, when: {change_type: deploi, within: 15m}}\n"
        "      - {title: Flip it back, when: {change_type: feature-flag}}\n"
        "      - {title: Undo the migration, when: {change_type: migration}}\n"
        "      - {title: Roll back again, when: {change_type: Deploy}}\n",
    )
    assert warnings(path) == [
        f'{path}:8: journeys[0].actions[0].when.change_type: no change event is of type "deploi" '
        "unless a tool sends that word: the action waits for one (did you mean deploy?)",
        f"{path}:9: journeys[0].actions[1].when.change_type: no change event is of type "
        '"feature-flag" unless a tool sends that word: the action waits for one '
        "(did you mean feature_flag?)",
    ]


def test_a_change_type_that_is_a_word_of_its_own_is_not_warned_of(tmp_path: Path) -> None:
    # Tools send words of their own that merely hold a documented one: more than a letter
    # off, they are no typo, and the team lead who wrote them meant them.
    words = ["redeploy", "undeploy", "deployment", "upscale", "rescale", "reconfig"]
    path = checkout(
        tmp_path,
        "    actions:\n"
        + "".join(
            f"      - {{title: T{i}, when: {{change_type: {w}}}}}\n" for i, w in enumerate(words)
        )
        + "      - {title: Swapped, when: {change_type: deplyo}}\n",
    )
    assert warnings(path) == [
        f"{path}:14: journeys[0].actions[6].when.change_type: no change event is of type "
        '"deplyo" unless a tool sends that word: the action waits for one (did you mean deploy?)'
    ]


def test_a_placeholder_written_the_way_of_another_template_language_is_warned_of(
    tmp_path: Path,
) -> None:
    # Each is valid and sent or shown as written: {{service}} is a literal {service} in a
    # run (and its value in braces in a title), $service and { service } are text.
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: 'Roll back { service } to $previous_version in {{region}}'\n"
        "        when: {change_type: deploy}\n"
        "        run:\n"
        "          webhook:\n"
        "            url: 'https://deploy.example/api/{{service}}'\n"
        "            body: {to: '{previous_version}', literal: '{{x}} $5'}\n"
        "            secret: s3cret\n",
    )
    fix = "a field is written {%s}"
    assert warnings(path) == [
        f"{path}:9: journeys[0].actions[0].title: {{ service }} is shown as written: "
        + fix % "service",
        f"{path}:9: journeys[0].actions[0].title: $previous_version is shown as written "
        "($name is how a KPI query names a label): " + fix % "previous_version",
        f"{path}:9: journeys[0].actions[0].title: {{{{region}}}} is shown as its value in "
        "braces: " + fix % "region",
        f"{path}:13: journeys[0].actions[0].run.webhook.url: {{{{service}}}} is sent as the "
        "text {service} (double braces are a literal brace): " + fix % "service",
    ]


def test_a_title_is_told_only_of_the_fields_a_title_can_have(tmp_path: Path) -> None:
    # A title is filled with the change's fields and the group labels, never a run's
    # {incident_id}: "a field is written {incident_id}" would lead to an error, and a word
    # in spaced braces that names no field is just text.
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - title: 'Page { oncall } about $incident_id, { journey } and { service }'\n"
        "        when: {change_type: deploy}\n",
    )
    assert warnings(path) == [
        f"{path}:8: journeys[0].actions[0].title: {{ service }} is shown as written: "
        "a field is written {service}"
    ]


def test_a_run_field_in_triple_braces_is_said_to_be_sent_in_braces(tmp_path: Path) -> None:
    # Mustache's unescaped {{{service}}} is {{ then {service} then }}: the run sends the
    # service's name in braces, never the text {service}.
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: Roll back\n"
        "        when: {change_type: deploy, single_service: true}\n"
        "        run:\n"
        "          webhook:\n"
        "            url: 'https://deploy.example/api/rollback'\n"
        "            body: {service: '{{{service}}}'}\n"
        "            secret: s3cret\n",
    )
    assert warnings(path) == [
        f"{path}:14: journeys[0].actions[0].run.webhook.body: {{{{{{service}}}}}} is sent as "
        "its value in braces: a field is written {service}"
    ]


def test_an_environment_variable_named_like_a_field_is_refused_by_a_team_leads_check_too(
    tmp_path: Path,
) -> None:
    # ${previous_version} is read from the environment when the file is loaded: serve
    # refuses it (unset), and a team lead's check, where unset reads as empty, did not.
    path = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: 'Roll back to ${previous_version}'\n"
        "        when: {change_type: deploy}\n"
        "        run:\n"
        "          webhook:\n"
        "            url: 'https://deploy.example/api/rollback'\n"
        "            body: {to: '${previous_version}', token: '${JR_HUNT_TOKEN}'}\n"
        "            secret: s3cret\n",
    )
    with pytest.raises(ConfigError):
        load_journeys(path, ReceiverConfig())
    reason = (
        "${previous_version} is an environment variable, read once when the file is "
        "loaded: a field is written {previous_version}"
    )
    assert [str(p) for p in check(None, path)] == [
        f"{path}:9: journeys[0].actions[0].title: {reason}",
        f"{path}:14: journeys[0].actions[0].run.webhook.body.to: {reason}",
    ]


def test_a_placeholder_in_a_field_that_is_not_templated_is_warned_of(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    runbooks:\n"
        "      - title: 'Errors in {service}'\n"
        "        url: 'https://runbooks.example.com/{service}'\n",
    )
    path.write_text(
        path.read_text().replace("{team: payments}", "{team: p, slack_channel: '#inc-{env}'}")
    )
    assert warnings(path) == [
        f"{path}:5: journeys[0].owner.slack_channel: {{env}} is sent as written: "
        "slack_channel is not a template",
        f"{path}:8: journeys[0].runbooks[0].title: {{service}} is shown as written: "
        "a runbook's title is not a template",
        f"{path}:9: journeys[0].runbooks[0].url: {{service}} is sent as written: "
        "a runbook's url is not a template",
    ]


def test_a_weight_of_zero_is_warned_of(tmp_path: Path) -> None:
    # A product: a zero weight makes every incident of the journey (or stage) score 0.
    path = checkout(
        tmp_path,
        "    kpis: [{name: orders, query: 'sum(x)', unit: x, bad_when: down,\n"
        "            revenue_per_unit: 0}]\n",
    )
    path.write_text(
        path.read_text()
        .replace("weight: 1.0\n", "weight: 0\n")
        .replace("weight: 1.0, match", "weight: 0.0, match")
    )
    assert warnings(path) == [
        f"{path}:4: journeys[0].weight: 0 scores every incident of the journey 0, the "
        "lowest priority, however bad: a weight says how much it matters, 1 the most, and "
        "the score is a product of weights",
        f"{path}:6: journeys[0].stages[0].weight: 0 scores the stage's alerts 0: an "
        "incident of them alone gets the lowest priority, however bad: a weight says how "
        "much it matters, 1 the most, and the score is a product of weights",
        f"{path}:8: journeys[0].kpis[0].revenue_per_unit: 0 puts no revenue at risk, "
        "however far the KPI falls (leave it out if the KPI earns nothing)",
    ]


def test_a_label_name_in_the_wrong_case_is_warned_of(tmp_path: Path) -> None:
    # Prometheus label names are case-sensitive: Service never matches service=payment.
    path = checkout(tmp_path, "    group_by: [Region]\n")
    path.write_text(path.read_text().replace("'service=\"p\"'", "'Service=\"p\"', 'Team=\"x\"'"))
    assert warnings(path) == [
        f'{path}:6: journeys[0].stages[0].match[0]: label names are case-sensitive: Service="p" '
        "never matches an alert's service label (did you mean service?)",
        f"{path}:7: journeys[0].group_by[0]: label names are case-sensitive: Region never "
        "groups by an alert's region label (did you mean region?)",
    ]


def test_a_regex_matcher_without_any_regex_is_warned_of(tmp_path: Path) -> None:
    # Alertmanager anchors regexes: =~"payment" matches the value payment only.
    path = checkout(tmp_path, "")
    path.write_text(
        path.read_text().replace(
            "'service=\"p\"'", "'service=~\"payment\"', 'env!~\"staging\"', 'tier=~\"a|b\"'"
        )
    )
    assert warnings(path) == [
        f'{path}:6: journeys[0].stages[0].match[0]: service=~"payment" matches the value '
        'payment only: regexes are anchored, as in Alertmanager (service=~"payment.*" '
        "for every value that starts with it)",
        f'{path}:6: journeys[0].stages[0].match[1]: env!~"staging" excludes the value '
        'staging only: regexes are anchored, as in Alertmanager (env!~"staging.*" '
        "for every value that starts with it)",
    ]


def test_a_duration_without_a_unit_is_warned_of(tmp_path: Path) -> None:
    # Read as seconds: within: 15 is 15 seconds, never 15 minutes. Prometheus and
    # Alertmanager refuse a duration without its unit.
    path = checkout(
        tmp_path,
        "    kpis: [{name: orders, query: 'sum(x)', unit: x, bad_when: down,\n"
        "            baseline_offset: '7'}]\n"
        "    actions: [{title: Roll back, when: {change_type: deploy, within: 15}},\n"
        "              {title: Restart, when: {change_type: deploy, within: 0.5}}]\n",
    )
    assert load_journeys(path).journeys[0].actions[0].when.within == 15
    assert warnings(path) == [
        f'{path}:8: journeys[0].kpis[0].baseline_offset: "7" is read as 7 seconds: write '
        "7s, or the unit meant (7m, 7h, 7d), as Prometheus and Alertmanager ask",
        f"{path}:9: journeys[0].actions[0].when.within: 15 is read as 15 seconds: write "
        "15s, or the unit meant (15m, 15h, 15d), as Prometheus and Alertmanager ask",
        f"{path}:10: journeys[0].actions[1].when.within: 0.5 is read as 0.5 seconds: write "
        "500ms, or the unit meant, as Prometheus and Alertmanager ask",
    ]


def test_a_kpi_query_naming_a_label_the_way_of_an_action_is_warned_of(tmp_path: Path) -> None:
    # A KPI query names a group label $region (or ${region}); {region} is sent to
    # Prometheus as written, matches no series, and the KPI is never measured.
    query = 'sum(rate(x{region="{region}", env="${env}", code=~"5.{2}"}[5m]))'
    path = checkout(
        tmp_path, f"    kpis: [{{name: orders, query: '{query}', unit: x, bad_when: down}}]\n"
    )
    assert warnings(path) == [
        f"{path}:7: journeys[0].kpis[0].query: {{region}} is sent to Prometheus as written: "
        'a KPI query names a label of the incident as $region (region="$region")'
    ]
