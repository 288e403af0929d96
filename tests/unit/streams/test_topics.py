"""The partitioner: Kafka's murmur2, exactly as aiokafka (and the Java client) compute it."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as reference_murmur2

from streams.topics import murmur2, partition_for


def _random_keys(count: int) -> list[bytes]:
    rng = random.Random(20)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(65))) for _ in range(count)]
    text = "abcXYZ019_-|\x1f\u00e9\u00fc\u20ac\u4e2d\U0001f600"
    keys += ["".join(rng.choice(text) for _ in range(rng.randrange(33))).encode() for _ in range(count)]
    return keys


def test_murmur2_equals_aiokafka_for_random_keys_of_every_length() -> None:
    keys = _random_keys(3000) + [bytes(length) for length in range(65)] + [b"\xff" * n for n in range(65)]
    for key in keys:
        assert murmur2(key) == reference_murmur2(key), key


@pytest.mark.parametrize("partitions", [1, 4, 12, 64])
def test_partition_for_is_kafkas_default_partition(partitions: int) -> None:
    for key in _random_keys(500):
        assert partition_for(key, partitions) == (reference_murmur2(key) & 0x7FFFFFFF) % partitions
