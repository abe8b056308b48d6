"""kafka/clients.py and app._credentials: one settings object maps onto aiokafka's and Faust's
TLS and SASL options alike (SASL itself is not run against a broker here: the dev broker has
none; the TLS path is run end to end in tests/integration/test_kafka_tls.py)."""

import ssl

import faust

from recsys_faust.app import _credentials
from recsys_faust.kafka.clients import client_kwargs
from recsys_faust.settings import Settings


def test_plaintext_has_no_tls_or_sasl_options():
    kw = client_kwargs(Settings(broker="kafka://b1:9092;kafka://b2:9092"))
    assert kw["bootstrap_servers"] == ["b1:9092", "b2:9092"] and kw["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in kw and "sasl_mechanism" not in kw
    assert _credentials(Settings()) is None


def test_sasl_ssl_gives_both_clients_the_same_mechanism_user_password_and_a_verifying_context():
    s = Settings(kafka_security_protocol="sasl_ssl", kafka_sasl_mechanism="scram-sha-512",
                 kafka_sasl_username="svc", kafka_sasl_password="pw")
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "svc" and kw["sasl_plain_password"] == "pw"
    assert kw["ssl_context"].verify_mode == ssl.CERT_REQUIRED and kw["ssl_context"].check_hostname
    creds = _credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, str(creds.mechanism.value)) == ("svc", "pw", "SCRAM-SHA-512")
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert "pw" not in repr(s)   # the password is a secret


def test_ssl_alone_is_tls_credentials():
    creds = _credentials(Settings(kafka_security_protocol="SSL"))
    assert isinstance(creds, faust.SSLCredentials)
