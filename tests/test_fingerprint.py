"""Incident keys: labels only, stable, unforgeable by label values."""

from __future__ import annotations

import hashlib

from receiver.fingerprint import group_key, key_label_names


def test_key_is_journey_plus_group_label_values_in_group_by_order() -> None:
    key = group_key("checkout", ["env", "region"], {"region": "eu", "env": "prod", "pod": "x"})
    assert key.text == 'checkout{env="prod",region="eu"}'
    assert key.label_map() == {"env": "prod", "region": "eu"}


def test_missing_group_label_is_the_empty_value() -> None:
    assert group_key("checkout", ["env", "region"], {"env": "prod"}).text == (
        'checkout{env="prod",region=""}'
    )


def test_digest_is_stable_and_url_safe() -> None:
    a = group_key("checkout", ["region"], {"region": "eu"})
    b = group_key("checkout", ["region"], {"region": "eu", "instance": "other"})
    # Incident ids embed the digest: it must never change between releases.
    assert a.digest == b.digest == hashlib.sha256(b'checkout{region="eu"}').hexdigest()[:12]
    assert a.digest.isalnum()
    assert group_key("checkout", ["region"], {"region": "us"}).digest != a.digest


def test_a_label_value_cannot_forge_another_key() -> None:
    forged = group_key("checkout", ["env", "region"], {"env": 'prod",region="eu', "region": ""})
    honest = group_key("checkout", ["env", "region"], {"env": "prod", "region": "eu"})
    assert forged.text != honest.text
    assert forged.digest != honest.digest


def test_a_keys_label_names_read_back_in_group_by_order_whatever_the_values() -> None:
    labels = {"env": 'a"b,c=d}', "region": "{x}", "cluster": "ü\\n", "zone": ""}
    key = group_key("checkout", ["env", "region", "cluster", "zone"], labels)
    assert key_label_names(key.text) == ["env", "region", "cluster", "zone"]
    assert key_label_names("not a key") == []
