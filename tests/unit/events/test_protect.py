"""events/protect.py: sealed fields round-trip, still validate as what they stand for, re-seal
under the newest key so the old one can go, and dead-letter copies never keep plaintext."""

import json

import pytest
from cryptography.fernet import Fernet, InvalidToken

from recsys_faust.events.model import Invalid
from recsys_faust.events.protect import FieldCipher, is_sealed, parse_fields
from recsys_faust.events.validate import validate_event

FIELDS = parse_fields("review.text,user-event.properties")
REVIEW = {"event_id": "e1", "user_id": "u1", "product_id": "p1", "rating": 4, "text": "my secret words",
          "timestamp": 1_700_000_000}
LOGIN = {"event_id": "e2", "user_id": "u1", "event_type": "login", "timestamp": 1_700_000_000,
         "properties": {"email": "u1@example.com"}}


def test_sealed_fields_round_trip_and_other_fields_stay_readable():
    c = FieldCipher([Fernet.generate_key().decode()], FIELDS)
    sealed = c.seal("review", REVIEW)
    assert is_sealed(sealed["text"]) and "secret" not in json.dumps(sealed)
    assert {k: v for k, v in sealed.items() if k != "text"} == {k: v for k, v in REVIEW.items() if k != "text"}
    assert c.open("review", sealed) == REVIEW
    login = c.seal("user-event", LOGIN)
    assert is_sealed(login["properties"]) and c.open("user-event", login) == LOGIN
    assert c.seal("review", sealed) == sealed          # sealing twice changes nothing
    assert c.seal("view", {"user_id": "u", "text": "x"})["text"] == "x"   # only the listed fields


def test_sealed_records_still_validate():
    c = FieldCipher([Fernet.generate_key().decode()], FIELDS)
    assert not isinstance(validate_event("amazon-reviews", c.seal("review", REVIEW), now=1_700_000_100), Invalid)
    assert not isinstance(validate_event("amazon-user-events", c.seal("user-event", LOGIN), now=1_700_000_100),
                          Invalid)
    # an unsealed non-object is still refused
    bad = validate_event("amazon-user-events", {**LOGIN, "properties": "plain"}, now=1_700_000_100)
    assert isinstance(bad, Invalid) and bad.code == "wrong_type"


def test_after_a_reseal_the_new_key_alone_opens_old_rows():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = FieldCipher([old], FIELDS).seal("review", REVIEW)
    both = FieldCipher([new, old], FIELDS)
    resealed, changed = both.reseal("review", stored)
    assert changed
    only_new = FieldCipher([new], FIELDS)
    assert only_new.open("review", resealed) == REVIEW
    with pytest.raises(InvalidToken):
        only_new.open("review", stored)              # what was not re-sealed needs the old key
    plain, changed = both.reseal("review", REVIEW)   # plaintext stored before keys: sealed too
    assert changed and is_sealed(plain["text"])


def test_dead_letter_copies_seal_fields_of_objects_and_all_of_unreadable_bytes():
    c = FieldCipher([Fernet.generate_key().decode()], FIELDS)
    raw, how = c.seal_raw("review", json.dumps({**REVIEW, "rating": 9}).encode())
    assert how == "fields" and b"secret" not in raw and json.loads(raw)["rating"] == 9
    raw, how = c.seal_raw("review", b'{"text": "my secret words", broken')
    assert how == "whole" and b"secret" not in raw


def test_bad_keys_and_field_lists_are_refused_with_the_variable_named():
    with pytest.raises(ValueError, match="RECSYS_FIELD_KEYS"):
        FieldCipher(["not-a-key"], FIELDS)
    with pytest.raises(ValueError, match="RECSYS_ENCRYPTED_FIELDS"):
        parse_fields("review")
