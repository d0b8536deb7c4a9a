from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import (
    AuthConfig,
    JourneysConfig,
    ReceiverConfig,
    ServerConfig,
    check,
    load,
    load_journeys,
    load_receiver_config,
    parse_duration,
    review,
)
from receiver.errors import ConfigError
from receiver.scoring import priority_for
from receiver.settings import Settings
from receiver.store.urls import check_url, shown_url

DATA = Path(__file__).parent / "data" / "config"
EXAMPLES = Path(__file__).parents[1] / "config"
OPEN = "server: {auth: {allow_open: true}}\n"


@pytest.fixture(autouse=True)
def _no_stray_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JR_TEST_UNSET_TOKEN", "JR_TEST_UNSET_HOST", "JR_TEST_SECRETS", "JR_TEST_VAR"):
        monkeypatch.delenv(name, raising=False)


def problems(path: Path) -> list[str]:
    loader = load_journeys if path.name.startswith("journeys") else load_receiver_config
    with pytest.raises(ConfigError) as info:
        loader(path)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(problem) for problem in info.value.problems]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "journeys_bad_weight",
            ["{file}:8: journeys[0].stages[0].weight: -1 is below the minimum 0"],
        ),
        ("receiver_unknown_field", ["{file}:3: server.keepalive: unknown field"]),
        (
            "journeys_misspelt_field",
            [
                "{file}:2: journeys[0].weight: is required",
                "{file}:4: journeys[0].wieght: unknown field (did you mean weight?)",
                "{file}:7: journeys[0].stages[0].match: is required",
                "{file}:8: journeys[0].stages[0].mach: unknown field (did you mean match?)",
            ],
        ),
        (
            "journeys_bad_matcher",
            [
                "{file}:11: journeys[0].stages[0].match[1]: "
                'invalid regex "payment-(service": missing )',
                "{file}:14: journeys[0].stages[1].match[0]: "
                'bad matcher "service": expected name, operator (=, !=, =~, !~) and value',
            ],
        ),
        (
            "journeys_duplicate_id",
            ['{file}:8: journeys[1].id: duplicate journey id "checkout" (first at line 2)'],
        ),
        (
            # PyYAML would keep the last one without a word: every one is named, with the
            # line of the first.
            "journeys_duplicate_key",
            [
                '{file}:10: journeys[0].stages[0].match: duplicate key "match" (first at line 9)',
                '{file}:13: topology.checkout: duplicate key "checkout" (first at line 12)',
            ],
        ),
        (
            "journeys_missing_field",
            [
                "{file}:2: journeys[0].name: is required",
                "{file}:5: journeys[0].owner.team: is required",
            ],
        ),
        (
            "receiver_bad_duration",
            [
                "{file}:2: grouping.group_wait: expected seconds or a duration like "
                '500ms, 30s, 2m, 1h30m, 7d, 1w, got "30 seconds"',
                "{file}:3: grouping.group_interval: must be longer than 0s",
                "{file}:4: grouping.resolve_after: -5 is below the minimum 0",
            ],
        ),
        (
            "receiver_yaml_syntax",
            [
                "{file}:3: YAML syntax error: "
                "expected <block end>, but found '<block mapping start>' "
                "(is this line, or the one before it, indented wrong?)"
            ],
        ),
        (
            "receiver_unset_env",
            [
                "{file}:3: server.auth.bearer_tokens[0]: "
                "environment variable JR_TEST_UNSET_TOKEN is not set"
            ],
        ),
        (
            "receiver_secret_file_missing",
            [
                "{file}:5: server.auth.basic.password_file: "
                f"cannot read {DATA / 'no-such-password.txt'}: No such file or directory"
            ],
        ),
        (
            "receiver_secret_twice",
            [
                "{file}:4: server.auth.read_bearer_tokens_file: "
                "set read_bearer_tokens or read_bearer_tokens_file, not both"
            ],
        ),
        (
            "receiver_routing_unknown_sink",
            ['{file}:3: routing.pagerduty: sink "pagerduty" is not configured under sinks'],
        ),
        (
            "receiver_sinks",
            [
                "{file}:3: sinks.pagerduty.events_url: "
                "expected an https:// URL (this client refuses plain http)",
                "{file}:4: sinks.slack.token: is required",
                "{file}:5: sinks.jira.labels: "
                "'has space': a Jira label is 1-255 characters without spaces",
                "{file}:6: outbox.max_attempts: 0 is below the minimum 1",
            ],
        ),
        (
            "receiver_short_lease",
            [
                "{file}:3: outbox.lease: 30s is too short for sinks.jira.timeout 10s: "
                "a delivery makes up to 6 calls; set it to at least 60s",
            ],
        ),
        (
            "receiver_basic_auth",
            [
                "{file}:3: server.auth.basic.username: "
                "cannot contain ':' (RFC 7617: the username ends at the first ':')",
                "{file}:3: server.auth.basic.password: is empty (an unset ${ENV}?)",
            ],
        ),
        (
            "receiver_pages_auth",
            [
                '{file}:5: server.auth.trusted_proxy.header: "X Forwarded User" is not an HTTP '
                "header name",
                '{file}:6: server.auth.trusted_proxy.from[1]: "10.1.2.3/8" has host bits set: '
                "did you mean 10.0.0.0/8?",
                '{file}:6: server.auth.trusted_proxy.from[2]: "proxy.internal" is not a CIDR '
                "like 10.0.0.0/8 or fd00::/8",
                "{file}:6: server.auth.trusted_proxy.from[3]: "
                "expected a CIDR like 10.0.0.0/8 or fd00::/8",
                "{file}:7: server.auth.session_ttl: must be longer than 0s",
                "{file}:8: server.auth.session_secret: is shorter than 32 characters: "
                "use a long random value (openssl rand -base64 48)",
            ],
        ),
        (
            "receiver_thresholds",
            [
                "{file}:2: scoring.thresholds.P2: 85 must be below P1 (80)",
                "{file}:2: scoring.thresholds.P4: 40 must be below P3 (40)",
            ],
        ),
        (
            "journeys_many_problems",
            [
                "{file}:5: journeys[0].weight: 1.5 is above the maximum 1",
                "{file}:7: journeys[0].automation: "
                'expected "observe", "recommend", "assist" or "auto", got "yes-please"',
                '{file}:10: journeys[0].stages[1].weight: expected a number, got "abc"',
                "{file}:10: journeys[0].stages[1].id: "
                'duplicate stage id "payment" (first at line 9)',
                '{file}:15: journeys[0].kpis[0].bad_when: expected "down" or "up", got "sideways"',
                '{file}:16: journeys[1].id: "unmapped" is reserved for alerts no stage matches',
                "{file}:20: journeys[1].stages: needs at least one stage",
                '{file}:21: journeys[2].id: duplicate journey id "checkout" (first at line 3)',
            ],
        ),
        (
            # Each says what the file shows, not only what YAML 1.1 made of it ("got 8").
            "journeys_yaml_surprises",
            [
                "{file}:4: journeys[0].name: expected a string, got 2026-04-18 "
                '(YAML reads 2026-04-18 as a date; write "2026-04-18" for the text)',
                "{file}:7: journeys[0].owner.team: expected a string, got null "
                '(YAML reads #payments after a space as a comment; write "#payments" for the text)',
                "{file}:8: journeys[0].owner.jira_project: expected a string, got false "
                '(YAML reads NO as false; write "NO" for the text)',
                "{file}:9: journeys[0].group_by[1]: expected a string, got true "
                '(YAML reads on as true; write "on" for the text)',
                "{file}:11: journeys[0].stages[0].id: expected a string, got 8 "
                '(YAML reads 010 as the number 8; write "010" for the text)',
                '{file}:15: journeys[0].kpis[0].bad_when: expected "down" or "up", got false '
                '(YAML reads no as false; write "no" for the text)',
            ],
        ),
        (
            "journeys_tab",
            [
                "{file}:4: YAML syntax error: found character '\\t' that cannot start any "
                "token (YAML does not allow tabs for indentation or after a value: use spaces)"
            ],
        ),
        (
            "receiver_many_problems",
            [
                '{file}:2: server.port: expected an integer, got "http"',
                "{file}:3: server.max_body_bytes: 0 must be greater than 0",
                '{file}:5: store.url: unsupported store scheme "postgres": '
                "use memory://, redis://, rediss://, unix://, redis+sentinel://, "
                "rediss+sentinel:// or redis+cluster://",
                '{file}:7: store.retention: duplicate key "retention" (first at line 6)',
                "{file}:9: prometheus.url: expected an http:// or https:// URL",
                "{file}:11: scoring.severity_weights.critical: 2 is above the maximum 1",
                '{file}:13: routing.log[1]: expected "P1", "P2", "P3", "P4" or "P5", got "P9"',
            ],
        ),
    ],
)
def test_config_errors(case: str, expected: list[str]) -> None:
    path = DATA / f"{case}.yaml"
    assert problems(path) == [line.replace("{file}", str(path)) for line in expected]


def test_secrets_read_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tokens").write_text("token-one\n\n  token-two  \n")
    (tmp_path / "password").write_text("s3cret pass\n")
    monkeypatch.setenv("JR_TEST_SECRETS", str(tmp_path))

    config = load_receiver_config(DATA / "receiver_secret_files.yaml")

    auth = config.server.auth
    assert [t.get_secret_value() for t in auth.bearer_tokens] == ["token-one", "token-two"]
    assert auth.basic is not None
    assert auth.basic.password.get_secret_value() == "s3cret pass"
    assert "s3cret" not in repr(config)
    assert "token-one" not in repr(config)


def test_pages_auth_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s" * 40
    (tmp_path / "session-secret").write_text(secret + "\n")
    path = tmp_path / "receiver.yaml"
    path.write_text(
        "server:\n"
        "  auth:\n"
        "    bearer_tokens: [write-token]\n"
        '    trusted_proxy: {from: [10.0.0.0/8, "fd00::/8", 127.0.0.1]}\n'
        "    session_ttl: 8h\n"
        f"    session_secret_file: {tmp_path / 'session-secret'}\n"
    )
    auth = load_receiver_config(path).server.auth

    assert auth.trusted_proxy is not None
    assert auth.trusted_proxy.header == "X-Forwarded-User"
    assert [str(n) for n in auth.trusted_proxy.from_] == ["10.0.0.0/8", "fd00::/8", "127.0.0.1/32"]
    assert auth.session_ttl == 8 * 3600
    assert auth.session_secret is not None
    assert auth.session_secret.get_secret_value() == secret
    assert secret not in repr(auth)

    # Unset, "${SESSION_SECRET:-}" means no secret: random keys kept in the store.
    monkeypatch.delenv("JR_TEST_VAR", raising=False)
    path.write_text('server: {auth: {bearer_tokens: [w], session_secret: "${JR_TEST_VAR:-}"}}\n')
    defaults = load_receiver_config(path).server.auth
    assert (defaults.session_secret, defaults.trusted_proxy) == (None, None)
    assert defaults.session_ttl == 12 * 3600


def test_secret_file_path_with_unset_variable_is_one_problem() -> None:
    path = DATA / "receiver_secret_files.yaml"
    unset = "environment variable JR_TEST_SECRETS is not set"
    assert problems(path) == [
        f"{path}:3: server.auth.bearer_tokens_file: {unset}",
        f"{path}:6: server.auth.basic.password_file: {unset}",
    ]


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(
        "journeys:\n"
        "  - id: checkout\n"
        "    name: Checkout\n"
        "    weight: 1\n"
        "    owner: {team: payments, pagerduty_routing_key: 987654321}\n"
        "    stages: [{id: payment, weight: 1, match: ['env=prod']}]\n"
    )
    assert problems(path) == [
        f"{path}:5: journeys[0].owner.pagerduty_routing_key: expected a string"
    ]


def test_example_configs_are_valid_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_TOKEN", "READ_TOKEN", "PD_KEY_PAYMENTS", "PD_KEY_DISCOVERY"):
        monkeypatch.delenv(name, raising=False)
    assert check(EXAMPLES / "receiver.yaml") == []

    config, journeys = load(EXAMPLES / "receiver.yaml")

    assert config.store.url == "memory://"
    assert config.server.auth.bearer_tokens == []  # no WEBHOOK_TOKEN: no auth
    assert config.journeys_file == EXAMPLES / "journeys.yaml"
    assert config.routing == {"log": ["P1", "P2", "P3", "P4", "P5"]}
    assert len(journeys.journeys) >= 4
    checkout = journeys.journeys[0]
    assert (checkout.id, checkout.weight, checkout.group_by) == ("checkout", 1.0, ["env", "region"])
    assert checkout.owner.pagerduty_routing_key is None
    stages = {stage.id: stage for stage in checkout.stages}
    assert stages["payment"].weight == 1.0
    assert [str(m) for m in stages["payment"].match] == [
        'service=~"payment-service|payments-db"',
        'env="prod"',
    ]
    assert stages["cart"].weight == 0.6
    assert str(stages["cart"].match[0]) == 'service=~"cart(-.*)?"'


def test_environment_variables_are_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_TOKEN", "from-env")
    monkeypatch.setenv("JR_TEST_VAR", "")
    path = tmp_path / "receiver.yaml"
    path.write_text(
        "server:\n"
        '  port: "${JR_TEST_PORT:-9999}"\n'
        '  auth: {bearer_tokens: ["${WEBHOOK_TOKEN}", "${JR_TEST_VAR}"]}\n'
        'store: {key_prefix: "${JR_TEST_VAR:-jr}-${JR_TEST_VAR}x"}\n'
    )
    config = load_receiver_config(path)
    assert config.server.port == 9999
    assert [t.get_secret_value() for t in config.server.auth.bearer_tokens] == ["from-env"]
    assert config.store.key_prefix == "jr-x"  # like the shell, :- also replaces empty values


def test_bad_variable_reference(tmp_path: Path) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text('store: {key_prefix: "${JR-PREFIX}"}\n')
    assert problems(path) == [
        f"{path}:1: store.key_prefix: bad reference ${{JR-PREFIX}}: "
        "use ${NAME} or ${NAME:-default}"
    ]


def test_no_receiver_yaml_means_defaults() -> None:
    config = ReceiverConfig()
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9095)
    assert config.server.keepalive_timeout == 120
    assert config.server.max_body_bytes == 5 * 1024 * 1024
    assert config.server.auth.bearer_tokens == []
    assert config.server.auth.basic is None
    assert (config.store.url, config.store.key_prefix, config.store.retention) == (
        "memory://",
        "jr",
        7 * 86400,
    )
    assert config.prometheus.url is None
    assert config.prometheus.baseline_offset == 7 * 86400
    assert (config.events.retention, config.events.lookback) == (7 * 86400, 1800)
    grouping = config.grouping
    assert grouping.group_by == ["env", "region"]
    assert (grouping.group_wait, grouping.group_interval) == (30, 120)
    assert (grouping.resolve_after, grouping.reopen_window) == (300, 1800)
    assert (config.scheduler.tick, config.scheduler.lease, config.scheduler.batch) == (1, 30, 100)
    assert config.scoring.severity_weights["critical"] == 1.0
    assert config.scoring.tier.default == 1.0
    assert config.routing == {"log": ["P1", "P2", "P3", "P4", "P5"]}
    assert config.sinks.enabled() == ("log",)


def test_empty_file_is_refused_as_open_and_otherwise_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text("# nothing here yet\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}: server.auth.bearer_tokens: no write credential")
    path.write_text("# only this\n" + OPEN)
    assert (
        load_receiver_config(path).model_dump()
        == ReceiverConfig(
            journeys_file=tmp_path / "journeys.yaml",
            server=ServerConfig(auth=AuthConfig(allow_open=True)),
        ).model_dump()
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("2m", 120),
        ("1h", 3600),
        ("1h30m", 5400),
        ("7d", 604800),
        ("1w", 604800),
        ("1y", 365 * 86400),
        ("1d2h3m4s5ms", 93784.005),
        ("0s", 0),
        ("90", 90),
        ("1.5", 1.5),
        (45, 45),
        (0.25, 0.25),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5 minutes", "1m1h", "1.5h", "h", "-5s", "inf", "1H", "\u0663\u0660s", "\u00b2"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected seconds or a duration like"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["101y", "999999999999y", 1e300])
def test_a_duration_past_a_hundred_years_is_refused(text: str | float) -> None:
    with pytest.raises(ValueError, match="is longer than the maximum 100y"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["2024-02-30", "!!int abc", "!!float x1"])
def test_a_value_yaml_cannot_build_is_a_problem_naming_its_field(
    tmp_path: Path, value: str
) -> None:
    (tmp_path / "journeys.yaml").write_text("journeys: []\n")
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(OPEN + f"events: {{lookback: {value}}}\n")
    (found,) = check(cfg)
    assert (found.line, found.path) == (2, "events.lookback")
    assert str(found).startswith(f"{cfg}:2: events.lookback: cannot read this value: ")


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("~", "expected a string, got null"),
        ("null", "expected a string, got null"),
        ("false", "expected a string, got false"),
        ("10", "expected a string, got 10"),
    ],
)
def test_a_value_written_as_yaml_reads_it_is_said_without_a_hint(
    tmp_path: Path, written: str, reason: str
) -> None:
    # Only what YAML read behind the author's back (NO, 010, #channel) is explained.
    path = checkout(tmp_path, "")
    path.write_text(CHECKOUT.replace("{team: payments}", f"{{team: {written}}}"))
    assert problems(path) == [f"{path}:5: journeys[0].owner.team: {reason}"]


def test_load_reports_a_missing_receiver_yaml(tmp_path: Path) -> None:
    path = tmp_path / "receiver.yaml"
    (tmp_path / "journeys.yaml").write_text("journeys: []\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == f"{path}: cannot read the file: No such file or directory"


def test_load_reads_journeys_next_to_receiver_yaml(tmp_path: Path) -> None:
    (tmp_path / "receiver.yaml").write_text("journeys_file: teams/journeys.yaml\n" + OPEN)
    (tmp_path / "teams").mkdir()
    (tmp_path / "teams" / "journeys.yaml").write_text("unmapped: {weight: 0.3}\n")
    config, journeys = load(tmp_path / "receiver.yaml")
    assert config.journeys_file == tmp_path / "teams" / "journeys.yaml"
    assert journeys.unmapped.weight == 0.3

    _, journeys = load(tmp_path / "receiver.yaml", EXAMPLES / "journeys.yaml")
    assert journeys.journeys[0].id == "checkout"


def test_check_reports_both_files(tmp_path: Path) -> None:
    receiver = tmp_path / "receiver.yaml"
    receiver.write_text("server: {port: 70000}\n")
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text("unmapped: {weight: 2}\n")
    assert [str(p) for p in check(receiver)] == [
        f"{receiver}:1: server.port: 70000 is above the maximum 65535",
        f"{journeys}:1: unmapped.weight: 2 is above the maximum 1",
    ]
    assert (
        check(None, DATA / "journeys_bad_weight.yaml")
        == check(receiver, DATA / "journeys_bad_weight.yaml")[1:]
    )


def test_routing_to_a_disabled_sink(tmp_path: Path) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text("sinks:\n  log: {enabled: false}\n")
    assert problems(path) == [f'{path}:1: routing.log: sink "log" is disabled under sinks']
    path.write_text("sinks:\n  log: {enabled: false}\nrouting: {}\n" + OPEN)
    assert load_receiver_config(path).sinks.enabled() == ()


def test_yaml_merge_keys_override_without_duplicate_errors(tmp_path: Path) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text(
        "grouping: &defaults {group_wait: 10s, group_interval: 1m}\n"
        "events: {lookback: 5m}\n"
        "scheduler: {<<: {tick: 2s, lease: 10s}, tick: 5s}\n" + OPEN
    )
    config = load_receiver_config(path)
    assert (config.scheduler.tick, config.scheduler.lease) == (5, 10)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://127.0.0.1:6379/0", None),
        ("rediss://:pw@redis.example.com:6380/0", None),
        ("redis+sentinel://s1:26379,s2:26379/mymaster/0", None),
        ("redis+cluster://redis:6379", None),
        ("redis://redis:6379/0?socket_timeout=5&health_check_interval=10&client_name=jr", None),
        ("rediss://:pw@redis:6380/0?ssl_cert_reqs=none&protocol=3", None),
        ("unix:///run/redis.sock?db=2&password=s3cret", None),
        (
            "redis://:s3cret@redis:6379/0?socket_timout=5",
            'unknown option "socket_timout" in a redis:// URL: use one of redis-py\'s '
            "connection options (socket_timeout, health_check_interval, client_name, …)",
        ),
        # An object, not text, or a setting the store cannot work with (it reads its own
        # writes): refused, not passed on as a string that reads as true.
        *(
            (
                url,
                f'unknown option "{name}" in a {url.split(":")[0]}:// URL: use one of '
                "redis-py's connection options (socket_timeout, health_check_interval, "
                "client_name, …)",
            )
            for name, url in [
                ("connection_class", "redis://redis:6379/0?connection_class=x"),
                ("retry", "redis://redis:6379/0?retry=x"),
                ("read_from_replicas", "redis+cluster://redis:6379?read_from_replicas=false"),
                ("retry_on_timeout", "redis+cluster://redis:6379?retry_on_timeout=true"),
            ]
        ),
        (
            "redis+cluster://redis:6379/1",
            "a redis+cluster:// URL has no database number: a cluster has one",
        ),
        (
            "redis://redis:6379/0?ssl_ca_certs=/etc/ca.pem",
            "ssl_ca_certs needs rediss:// (TLS; not offered for a cluster)",
        ),
        (
            "redis://:s3cret@redis:6379/0?socket_timeout=soon",
            "Invalid value for 'socket_timeout' in connection URL.",
        ),
        (
            "rediss://redis:6380/0?ssl_ca_certs=/nowhere/ca.pem",
            "ssl_ca_certs: no file /nowhere/ca.pem",
        ),
        # A password with an unescaped / ? or # ends the host part early: never quoted.
        *(
            (
                url,
                "the user info cannot be read: %-escape / ? # @ in the password (%2F %3F %23 %40)",
            )
            for url in [
                "rediss://:Zk3/9qPw+ab==@redis:6380/0",
                "redis://:Qx7?vv@redis:6379/0",
                "redis://:Wm2#kk@redis:6379/0",
                "redis+sentinel://:Zk3/9q@s1/mymaster",
            ]
        ),
        (
            "redis+sentinel://s1:26379",
            "redis+sentinel:// needs the master name: redis+sentinel://host:26379/mymaster[/db]",
        ),
        ("redis+sentinel://:s3cret@s1,s2,s3/mymaster/0?sentinel_password=s3cret%26", None),
        ("redis+sentinel://s1:26379/mymaster?sentinel_username=jr&sentinel_password=pw", None),
        ("rediss+sentinel://s1:26379/mymaster/0?ssl_check_hostname=false", None),
        (
            "redis+sentinel://:s3cret@s1:26379/mymaster/0?sentinel_pasword=s3cret",
            'unknown option "sentinel_pasword" in a redis+sentinel:// URL: use '
            "sentinel_username, sentinel_password, ssl_ca_certs, ssl_certfile, ssl_keyfile "
            "or ssl_check_hostname",
        ),
        (
            "redis+sentinel://s1:26379/mymaster/0?sentinel_password=a&sentinel_password=b",
            'option "sentinel_password" is given twice',
        ),
        (
            "redis+sentinel://s1:26379/mymaster/0?ssl_ca_certs=/etc/ca.pem",
            "ssl_ca_certs needs rediss+sentinel:// (TLS to the sentinels and Redis)",
        ),
        (
            "rediss+sentinel://s1:26379/mymaster/0?ssl_ca_certs=/nowhere/ca.pem",
            "ssl_ca_certs: no file /nowhere/ca.pem",
        ),
        (
            "rediss+sentinel://s1:26379/mymaster/0?ssl_check_hostname=maybe",
            'ssl_check_hostname: expected true or false, got "maybe"',
        ),
        (
            "redis+sentinel://s1:26379,s2:2637x/mymaster/0",
            '"s2:2637x" is not a sentinel host:port: redis+sentinel://host:26379/mymaster[/db]',
        ),
        (
            "redis+sentinel://s1:²/mymaster",
            '"s1:²" is not a sentinel host:port: redis+sentinel://host:26379/mymaster[/db]',
        ),
        (
            "redis+sentinel://s1:26379/mymaster/²",
            '"/mymaster/²" is not /<master name>[/<db number>]: '
            "redis+sentinel://host:26379/mymaster[/db]",
        ),
        (
            "redis+sentinel://s1:26379/mymaster/zero",
            '"/mymaster/zero" is not /<master name>[/<db number>]: '
            "redis+sentinel://host:26379/mymaster[/db]",
        ),
        (
            "sentinel://s1:26379/mymaster",
            'unsupported store scheme "sentinel": use memory://, redis://, rediss://, '
            "unix://, redis+sentinel://, rediss+sentinel:// or redis+cluster://",
        ),
    ],
)
def test_store_urls(tmp_path: Path, url: str, reason: str | None) -> None:
    path = tmp_path / "receiver.yaml"
    path.write_text(f"store: {{url: '{url}'}}\n" + OPEN)
    if reason is None:
        config = load_receiver_config(path)
        assert config.store.url == url
        assert url not in repr(config)  # it may hold a password
    else:
        assert problems(path) == [f"{path}:1: store.url: {reason}"]  # no password in it


def test_a_sentinel_url_with_tls_files_that_exist(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    url = (
        f"rediss+sentinel://:pw@s1:26379,s2:26379/mymaster/0?sentinel_password=spw"
        f"&ssl_ca_certs={tmp_path}/ca.pem&ssl_certfile={tmp_path}/cert.pem"
        f"&ssl_keyfile={tmp_path}/key.pem"
    )
    path = tmp_path / "receiver.yaml"
    path.write_text(f"store: {{url: '{url}'}}\n" + OPEN)
    assert load_receiver_config(path).store.url == url


def test_a_store_url_as_printed_hides_a_password_option() -> None:
    assert shown_url("unix:///run/redis.sock?password=s3cret&db=2") == (
        "unix:///run/redis.sock?password=…&db=2"
    )
    # A "&" left in the password: what follows is no option, and is not shown.
    assert shown_url("redis://r:6379/0?password=ab&TOPSECRET=x&db=2") == (
        "redis://r:6379/0?password=…&…"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1:26379/mymaster?sentinel_password=ab&TOPSECRET",
        "redis+sentinel://s1:26379/mymaster?sentinel_password=ab&TOPSECRET=x",
        "redis://redis:6379/0?password=ab&TOPSECRET=x",
        "redis://redis:6379/0?password=ab&TOPSECRET",
    ],
)
def test_a_password_cut_by_an_ampersand_is_refused_without_quoting_it(url: str) -> None:
    with pytest.raises(ValueError, match='a "&" in its value must be written %26') as caught:
        check_url(url)
    assert "TOPSECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("sinks: {slack: {token: xoxb-1, ca_file: ca.pem}}", "sinks.slack.ca_file"),
        ("sinks: {pagerduty: {routing_key: k, ca_file: ca.pem}}", "sinks.pagerduty.ca_file"),
        ("alertmanager: {urls: ['https://am:9093'], ca_file: ca.pem}", "alertmanager.ca_file"),
        (
            "events: {feeds: [{type: json, name: d, url: 'https://d', ca_file: ca.pem}]}",
            "events.feeds[0].ca_file",
        ),
    ],
)
def test_a_ca_file_that_holds_no_certificate_is_a_problem_at_check(
    tmp_path: Path, section: str, field: str
) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "journeys.yaml").write_text("journeys: []\n")
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(OPEN + section + "\n")
    (found,) = check(cfg)
    assert str(found) == (f"{cfg}:2: {field}: holds no CA certificate this machine can load (PEM)")


def test_a_hash_in_a_store_url_is_refused_not_cut_there() -> None:
    url = "rediss+sentinel://s1:26379/mymaster?sentinel_password=a#b&ssl_ca_certs=/ca.pem"
    with pytest.raises(ValueError, match='a "#" in a store URL must be written %23'):
        check_url(url)


def test_a_store_url_as_printed_shows_no_password() -> None:
    assert shown_url(
        "rediss+sentinel://jr:s3cret@s1:26379,s2/mymaster/0"
        "?sentinel_password=s3cret&ssl_ca_certs=/etc/ca.pem"
    ) == ("rediss+sentinel://s1:26379,s2/mymaster/0?sentinel_password=…&ssl_ca_certs=/etc/ca.pem")
    assert shown_url("redis://:s3cret@redis:6379/0") == "redis://redis:6379/0"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text("- id: checkout\n")
    # The list a team lead wrote is the journeys, without the key that holds them.
    assert problems(path) == [
        f"{path}:1: expected a mapping, got a list (the list of journeys goes under journeys:)"
    ]
    receiver = path.with_name("receiver.yaml")
    receiver.write_text("- server: {}\n")
    assert problems(receiver) == [f"{receiver}:1: expected a mapping, got a list"]


@pytest.mark.parametrize(
    ("score", "priority"),
    [
        (100, "P1"),
        (80, "P1"),
        (79.9, "P2"),
        (60, "P2"),
        (40, "P3"),
        (20, "P4"),
        (19.9, "P5"),
        (0, "P5"),
    ],
)
def test_default_thresholds_to_priority(score: float, priority: str) -> None:
    """The default ``scoring.thresholds``, as the receiver applies them."""
    rules = Settings.build(ReceiverConfig(), JourneysConfig()).rules
    assert priority_for(score, rules.thresholds) == priority


def test_secret_files_inside_lists(tmp_path: Path) -> None:
    (tmp_path / "pd-key").write_text("R0UT1NGKEY\n")
    path = tmp_path / "journeys.yaml"
    path.write_text(
        "journeys:\n"
        "  - id: checkout\n"
        "    name: Checkout\n"
        "    weight: 1\n"
        "    owner: {team: payments, pagerduty_routing_key_file: pd-key}\n"
        "    stages: [{id: payment, weight: 1, match: ['env=prod']}]\n"
    )
    key = load_journeys(path).journeys[0].owner.pagerduty_routing_key
    assert key is not None
    assert key.get_secret_value() == "R0UT1NGKEY"


def test_kpi_queries_may_only_use_the_journeys_group_labels() -> None:
    path = DATA / "journeys_kpi_placeholders.yaml"
    assert [str(p) for p in check(None, path)] == [
        f"{path}:9: journeys[0].kpis[0].query: uses $cluster, which is not among the "
        "journey's group_by labels (env, region): an incident would not have it",
        f"{path}:13: journeys[0].kpis[1].query: placeholder at column 12 is outside a string "
        'literal; a label value can only be inserted quoted, e.g. region="$region"',
    ]
    # serve and explain with no receiver.yaml refuse what check refuses.
    with pytest.raises(ConfigError) as refused:
        load_journeys(path, ReceiverConfig())
    assert [str(p) for p in refused.value.problems] == [str(p) for p in check(None, path)]


def test_the_example_config_refuses_to_run_open_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ALLOW_OPEN", raising=False)
    monkeypatch.delenv("WEBHOOK_TOKEN", raising=False)
    example = EXAMPLES / "receiver.yaml"
    line = next(
        n for n, text in enumerate(example.read_text().splitlines(), 1)
        if text.strip().startswith("bearer_tokens:")
    )  # fmt: skip
    [problem] = check(example)
    assert str(problem).startswith(
        f"{example}:{line}: server.auth.bearer_tokens: no write credential "
        "is configured (an unset ${WEBHOOK_TOKEN:-}?)"
    )
    monkeypatch.setenv("WEBHOOK_TOKEN", "from-alertmanager")
    assert check(EXAMPLES / "receiver.yaml") == []
    monkeypatch.delenv("WEBHOOK_TOKEN")
    monkeypatch.setenv("ALLOW_OPEN", "true")  # what scripts/serve sets
    assert check(EXAMPLES / "receiver.yaml") == []


# A journeys.yaml with one journey, up to its stages: a test adds what it is about.
CHECKOUT = (
    "journeys:\n"
    "  - id: checkout\n"
    "    name: Checkout\n"
    "    weight: 1.0\n"
    "    owner: {team: payments}\n"
    "    stages: [{id: payment, weight: 1.0, match: ['service=\"p\"']}]\n"
)


def checkout(tmp_path: Path, rest: str) -> Path:
    """journeys.yaml of ``CHECKOUT`` and ``rest``."""
    path = tmp_path / "journeys.yaml"
    path.write_text(CHECKOUT + rest)
    return path


def test_a_kpi_condition_takes_one_bound(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    kpis: [{name: conversion, query: 'sum(x)', unit: ratio, bad_when: down}]\n"
        "    actions:\n"
        "      - title: Restart\n"
        "        when: {kpi: {name: conversion}}\n",
    )
    [problem] = problems(path)
    assert "set deviation_pct_below or deviation_pct_above (one of them)" in problem
    assert ".actions[0].when.kpi" in problem


def test_action_ids_are_unique_and_conditions_name_the_journeys_own(tmp_path: Path) -> None:
    path = checkout(
        tmp_path,
        "    kpis: [{name: conversion, query: 'sum(x)', unit: ratio, bad_when: down,\n"
        "            revenue_per_unit: .inf}]\n"
        "    actions:\n"
        "      - {id: restart, title: Restart payments}\n"
        "      - {id: restart, title: Restart cart, when: {stages: [payment, paymnet]}}\n"
        "      - {title: Page the DBA, when: {kpi: {name: convresion, deviation_pct_below: -5}}}\n"
        "      - {title: Page the DBA}\n",
    )
    assert problems(path) == [
        f"{path}:8: journeys[0].kpis[0].revenue_per_unit: expected a finite number, got inf",
        f"{path}:11: journeys[0].actions[1].id: duplicate action id (or title, without an id) "
        '"restart" (first at line 10)',
        f'{path}:11: journeys[0].actions[1].when.stages[1]: the journey has no stage "paymnet"',
        f'{path}:12: journeys[0].actions[2].when.kpi.name: the journey has no KPI "convresion"',
        f"{path}:13: journeys[0].actions[3].id: duplicate action id (or title, without an id) "
        '"Page the DBA" (first at line 12)',
    ]


def test_a_runs_timeout_must_fit_in_the_outbox_lease(tmp_path: Path) -> None:
    """The outbox cuts each attempt of a run at 0.8 x ``outbox.lease``: a
    ``run.webhook.timeout`` past it would have a run that was answered within its own
    timeout recorded as one that may have run, and sent again."""
    journeys = checkout(
        tmp_path,
        "    actions:\n"
        "      - id: rollback\n"
        "        title: Roll back\n"
        "        run:\n"
        "          webhook:\n"
        "            url: https://deploy.example/rollback\n"
        "            secret: s3cret\n"
        "            timeout: 10s\n",
    )
    receiver = tmp_path / "receiver.yaml"
    receiver.write_text(OPEN + "outbox: {lease: 2s}\n")
    expected = [
        f"{journeys}:14: journeys[0].actions[0].run.webhook.timeout: 10s needs outbox.lease "
        "(receiver.yaml, 2s) to be at least 2 times it, 20s: the outbox cuts each attempt at "
        "0.8 of the lease, which must hold the call and room to read the incident and record "
        "the run; a run cut short is sent again as one that may have happened. Raise "
        "outbox.lease, or shorten the timeout"
    ]
    with pytest.raises(ConfigError) as refused:
        load(receiver)
    assert [str(p) for p in refused.value.problems] == expected
    assert [str(p) for p in check(receiver)] == expected
    # A team lead's check, lent the lease of the receiver.yaml found (see test_cli.py).
    assert [str(p) for p in check(None, journeys, lease=2.0)] == expected
    # Served without a receiver.yaml: the default lease, 60s, fits it.
    assert load_journeys(journeys, ReceiverConfig()).journeys[0].actions[0].run is not None

    receiver.write_text(OPEN + "outbox: {lease: 20s}\n")
    assert check(receiver) == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("memory://", "an embedded store has no replicas"),
        ("redis+cluster://127.0.0.1:7000", "set min-replicas-to-write on the cluster's nodes"),
    ],
)
def test_replica_acks_need_a_store_with_replicas(tmp_path: Path, url: str, why: str) -> None:
    cfg = tmp_path / "receiver.yaml"
    cfg.write_text(
        f"server: {{auth: {{allow_open: true}}}}\nstore: {{url: '{url}', replica_acks: 1}}\n"
    )
    with pytest.raises(ConfigError, match=f"replica_acks: not available.*{why}"):
        load_receiver_config(cfg)


def test_a_duration_without_a_unit_is_warned_of_in_receiver_yaml(tmp_path: Path) -> None:
    # Read as seconds, as before: reopen_window: 30 is half a minute, not the 30m default
    # it looks like. Alertmanager refuses group_wait: 30 outright.
    path = tmp_path / "receiver.yaml"
    path.write_text(
        OPEN + "grouping: {group_wait: 30, reopen_window: '30', resolve_after: 0}\n"
        "events: {lookback: 30m}\noutbox: {lease: 120}\n"
    )
    (tmp_path / "journeys.yaml").write_text("journeys: []\n")
    assert load_receiver_config(path).grouping.reopen_window == 30
    problems, warnings = review(path)
    assert problems == []
    assert [str(w) for w in warnings] == [
        f"{path}:2: grouping.group_wait: 30 is read as 30 seconds: write 30s, or the unit "
        "meant (30m, 30h, 30d), as Prometheus and Alertmanager ask",
        f'{path}:2: grouping.reopen_window: "30" is read as 30 seconds: write 30s, or the '
        "unit meant (30m, 30h, 30d), as Prometheus and Alertmanager ask",
        f"{path}:4: outbox.lease: 120 is read as 120 seconds: write 2m, or the unit meant, "
        "as Prometheus and Alertmanager ask",
    ]


def test_the_unit_a_duration_warning_offers_is_one_check_accepts(tmp_path: Path) -> None:
    # Durations take whole numbers of each unit: 1.5s is refused, 1500ms is the same time.
    path = tmp_path / "receiver.yaml"
    (tmp_path / "journeys.yaml").write_text("journeys: []\n")
    path.write_text(
        OPEN + "store: {replica_ack_timeout: 1.5}\noutbox: {backoff_initial: 1}\n"
        "prometheus: {timeout: 0.0005, budget: 1.1}\n"
    )
    problems, warnings = review(path)
    assert problems == []
    assert [str(w) for w in warnings] == [
        f"{path}:2: store.replica_ack_timeout: 1.5 is read as 1.5 seconds: write 1500ms, or "
        "the unit meant, as Prometheus and Alertmanager ask",
        f"{path}:3: outbox.backoff_initial: 1 is read as 1 second: write 1s, or the unit "
        "meant (1m, 1h, 1d), as Prometheus and Alertmanager ask",
        f"{path}:4: prometheus.timeout: 0.0005 is read as 0.0005 seconds: write the unit "
        "meant, as Prometheus and Alertmanager ask",
        f"{path}:4: prometheus.budget: 1.1 is read as 1.1 seconds: write 1100ms, or the unit "
        "meant, as Prometheus and Alertmanager ask",
    ]
    path.write_text(OPEN + "store: {replica_ack_timeout: 1500ms}\noutbox: {backoff_initial: 1s}\n")
    assert review(path) == ([], [])
