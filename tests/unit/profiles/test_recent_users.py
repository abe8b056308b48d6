"""profiles/recent_users.py: newest first, each user once, bounded."""

from recsys_faust.profiles.recent_users import RecentUsers


def test_newest_first_each_user_once_and_bounded():
    recent = RecentUsers(size=3)
    recent.touch(["a", "b", "c"])
    recent.touch(["a"])          # a changed again: newest
    assert recent.newest(10) == ["a", "c", "b"]
    recent.touch(["d"])          # over the bound: the least recent (b) goes
    assert recent.newest(10) == ["d", "a", "c"] and len(recent) == 3
    assert recent.newest(2) == ["d", "a"]
    assert RecentUsers().newest(5) == []
