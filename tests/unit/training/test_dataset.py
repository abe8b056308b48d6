
from recsys_faust.training.dataset import from_rows, leave_last_out


def test_leave_last_out_holds_out_each_users_last_row():
    data = from_rows([("a", "x", 1, 1, None), ("a", "y", 1, 2, None), ("b", "x", 1, 1, None),
                      ("a", "z", 1, 2, None)])
    train, test = leave_last_out(data)
    assert data.item_ids[data.items[test[0]]] == "z"  # tie on time: the later row is last
    assert test[1] == -1 and train.sum() == 3
