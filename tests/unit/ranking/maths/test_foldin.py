import numpy as np

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.ranking.maths.foldin import STACK_MIN_USERS, FoldIn
from recsys_faust.training.als import ALSParams, train_als
from recsys_faust.training.dataset import from_rows, leave_last_out
from recsys_faust.training.evaluate import _seen_lists, rank_by_scores

PARAMS = ALSParams(factors=16, regularization=0.5, alpha=10.0, iterations=10, seed=3)


def shop(users=300, seed=1):
    evs = synthetic_events(ShopSpec(users=users, items=200, categories=8, events_per_user=12, seed=seed), end=1e9)
    return from_rows((o["user_id"], o["product_id"], 1.0, o["timestamp"], o.get("category"))
                     for k, o in evs if k != "user-event")


def ndcg(ranked, target):
    hits = ranked == target[:, None]
    return float(np.where(hits.any(1), 1 / np.log2(np.argmax(hits, 1) + 2), 0).mean())


def test_foldin_solves_the_implicit_als_normal_equations():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(30, 5)).astype(np.float32)
    items, w = np.array([2, 7, 11]), np.array([1.0, 0.5, 2.0])
    x = FoldIn(Y, regularization=0.3, alpha=4.0).user_vector(items, w)
    c = 4.0 * w
    # the full (dense) objective's gradient must vanish: sum_i c_ui (x.y_i - p_ui) y_i + reg x = 0
    C = np.ones(30)
    C[items] = c
    P = np.zeros(30)
    P[items] = 1
    grad = (Y.T * C) @ (Y @ x - P) + 0.3 * x
    assert np.abs(grad).max() < 1e-3


def test_batched_foldin_equals_one_user_at_a_time():
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(300, 16)).astype(np.float32)
    fold = FoldIn(Y, regularization=0.5, alpha=8.0)
    histories = [(rng.choice(300, size=m, replace=False), rng.uniform(0.5, 4.0, size=m)) for m in (1, 7, 0, 30, 3)]
    histories.append((np.array([4, 9, 11]), np.array([0.05, 0.1, 2.0])))  # confidence below 1: c - 1 < 0
    histories += [(rng.choice(300, size=m, replace=False), rng.uniform(0.0, 3.0, size=m)) for m in (2, 4, 5, 16, 17)]
    # widths 8 and 16 get enough users to be solved as padded stacks, the rest one by one
    histories += [(rng.choice(300, size=m, replace=False), rng.uniform(0.0, 3.0, size=m))
                  for m in (5, 6, 7, 8, 8, 6, 9, 12, 13, 16, 15)]
    assert sum(5 <= len(h[0]) <= 8 for h in histories) >= STACK_MIN_USERS
    offsets = np.cumsum([0] + [len(items) for items, _ in histories])
    batched = fold.user_vectors(np.concatenate([items for items, _ in histories]).astype(np.int64),
                                np.concatenate([w for _, w in histories]), offsets)
    assert batched.shape == (len(histories), 16)
    for (items, weights), got in zip(histories, batched):
        np.testing.assert_allclose(got, fold.user_vector(items, weights), rtol=1e-4, atol=1e-5)


def test_foldin_recommendations_reach_90_percent_of_batch_quality():
    data = shop()
    train, test_row = leave_last_out(data)
    users = np.flatnonzero(test_row >= 0)
    target = data.items[test_row[users]]
    user_f, item_f, _ = train_als(data.matrix(train), PARAMS)
    seen = _seen_lists(data, train)
    batch = ndcg(rank_by_scores(user_f, item_f, seen, users), target)
    fold = FoldIn(item_f, regularization=PARAMS.regularization, alpha=PARAMS.alpha)
    folded = np.stack([fold.user_vector(seen[u], np.ones(len(seen[u]))) for u in range(data.n_users)])
    streamed = ndcg(rank_by_scores(folded, item_f, seen, users), target)
    assert batch > 0.05  # the model learned the shop's structure
    assert streamed >= 0.9 * batch, (streamed, batch)
