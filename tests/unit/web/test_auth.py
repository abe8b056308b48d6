"""web/auth.py: scopes, constant-time checks over every valid token, and the tokens file that
rotates tokens without a restart (read again once it changes, looked at once a second)."""

import os


from recsys_faust.settings import Settings
from recsys_faust.web import auth


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def check(settings, scope, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        auth.check(settings, headers, scope)
        return 200
    except auth.AuthError as exc:
        return exc.status


def test_scopes_and_codes():
    s = Settings(read_tokens="r1, r2", ingest_tokens="i1")
    assert [check(s, "read", t) for t in ("r1", "r2", "i1", None)] == [200, 200, 403, 401]
    assert check(s, "ingest", "i1") == 200 and check(s, "metrics", None) == 200   # metrics open
    assert check(s, "admin", "anything") == 401                                    # admin disabled
    assert auth.modes(s) == {"read": "token", "ingest": "token", "admin": "disabled", "metrics": "open"}


def test_the_tokens_file_overrides_its_scopes_and_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("RECSYS_READ_TOKENS=file-a\n# a comment\nUNRELATED=x\n")
    clock = Clock()
    source = auth.TokensFile(path, clock)
    assert source.lists() == {"read_tokens": "file-a"}
    path.write_text("RECSYS_READ_TOKENS=file-a,file-b\nRECSYS_INGEST_TOKENS=ing\n")
    os.utime(path, ns=(10**18, 10**18))          # a different mtime, whatever the file system's clock
    assert source.lists() == {"read_tokens": "file-a"}   # not looked at again within the second
    clock.t = 1.5
    assert source.lists() == {"read_tokens": "file-a,file-b", "ingest_tokens": "ing"}
    path.unlink()
    clock.t = 3.0
    assert source.lists() == {}                  # gone: no list at all (every scope refuses)


def test_a_configured_tokens_file_is_the_only_source_and_fails_closed(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("RECSYS_READ_TOKENS=from-file\nRECSYS_INGEST_TOKENS=\n")
    s = Settings(read_tokens="from-env", ingest_tokens="ingest-env", metrics_token="m-env", tokens_file=path)
    auth._FILES.clear()
    assert check(s, "read", "from-file") == 200 and check(s, "read", "from-env") == 403
    assert check(s, "ingest", "ingest-env") == 401   # an empty line closes its scope, no fallback
    assert check(s, "ingest", None) == 401           # ... and does not open it
    assert check(s, "metrics", "m-env") == 401       # a scope the file does not name is closed too
    assert auth.modes(s) == {"read": "token", "ingest": "disabled", "admin": "disabled", "metrics": "disabled"}
    missing = Settings(read_tokens="from-env", tokens_file=tmp_path / "nowhere")
    assert check(missing, "read", "from-env") == 401 and check(missing, "read", None) == 401


def test_the_token_is_read_whatever_its_spacing():
    s = Settings(read_tokens="tok")
    for header in ("Bearer tok", "Bearer  tok", "Bearer tok ", "Bearer \ttok"):
        assert auth.bearer({"Authorization": header}) == "tok"
        auth.check(s, {"Authorization": header}, "read")
    assert auth.bearer({"Authorization": "Basic tok"}) is None and auth.bearer({}) is None
