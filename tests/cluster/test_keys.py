"""The key scheme on Redis Cluster, pure: every key and channel of one centre carries its one hash
tag, so all of them lie in one slot; two centres' tags may lie in different slots."""

from __future__ import annotations

import inspect

import pytest
from redis.cluster import key_slot

from routing.redis_keys import KEYS, RedisKeys, check_tag


def names(keys: RedisKeys) -> dict[str, str]:
    """Every key or channel of ``keys``, with sample arguments."""
    found = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if not name.startswith("_"):
            params = [p for p in inspect.signature(method).parameters if p != "self"]
            found[name] = method(*(f"sample-{p}" for p in params))
    return found


@pytest.mark.parametrize("keys", [KEYS, RedisKeys(tag="north"), RedisKeys(prefix="elsewhere:", tag="south")])
def test_every_key_of_one_centre_lies_in_one_slot(keys: RedisKeys) -> None:
    found = names(keys)
    assert len(found) >= 40  # every method of the schema, not a handful
    slots = {name: key_slot(key.encode()) for name, key in found.items()}
    assert set(slots.values()) == {key_slot(f"{{{keys.tag}}}".encode())}, slots
    for name, key in found.items():  # one hash tag, and it is the first pair of braces
        assert key.startswith(f"{keys.prefix}{{{keys.tag}}}:"), name
        assert key.count("{") == key.count("}") == 1, name


def test_two_centres_hash_to_different_slots() -> None:
    north, south = RedisKeys(tag="north"), RedisKeys(tag="south")
    assert key_slot(north.audit_stream().encode()) != key_slot(south.audit_stream().encode())
    assert north.queue_waiting("sales") != south.queue_waiting("sales")


@pytest.mark.parametrize("bad", ["", "a}b", "{a", "x" * 65, "with space", "colon:"])
def test_a_tag_that_cannot_be_a_hash_tag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a key tag"):
        check_tag(bad)
    with pytest.raises(ValueError, match="is not a key tag"):
        RedisKeys(tag=bad)


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="no braces"):
        RedisKeys(prefix="{x}:")
