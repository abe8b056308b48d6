

from recsys_faust.kafka.partitioning import partition_for


def test_murmur2_matches_kafka_reference_values():
    # Signed murmur2 values from Apache Kafka's UtilsTest.testMurmur2; the Java client's
    # partition is toPositive(murmur2(key)) % n, i.e. (h & 0x7fffffff) % n.
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
               b"a-little-bit-longer-string": -1486304829, b"abc": 479470107}
    for key, signed in vectors.items():
        assert partition_for(key, 2**31 - 1) == (signed & 0x7FFFFFFF) % (2**31 - 1)
        assert partition_for(key, 8) == (signed & 0x7FFFFFFF) % 8
