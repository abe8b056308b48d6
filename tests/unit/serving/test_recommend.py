from recsys_faust.serving.recommend import select


def test_select_filters():
    items = [{"product_id": p, "score": 1, "category": c} for p, c in [("a", "x"), ("b", "y"), ("c", "x")]]
    assert [i["product_id"] for i in select(items, 2, exclude={"a"})] == ["b", "c"]
    assert [i["product_id"] for i in select(items, 5, category="x")] == ["a", "c"]
