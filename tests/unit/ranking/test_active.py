import numpy as np

from recsys_faust.ranking import artifact as art
from recsys_faust.ranking.active import ModelHolder


def test_model_holder_switches_only_forward():
    holder = ModelHolder()
    mk = lambda v: art.ModelArtifact(v, ["a", "b"], np.eye(2, dtype=np.float32), params={"alpha": 1, "regularization": 1})
    assert holder.offer(mk("v2"), 2.0) and holder.active.version == "v2"
    assert not holder.offer(mk("v1"), 1.0) and holder.active.version == "v2"
    assert holder.active.similar("a", 1)[0]["product_id"] == "b"
    assert holder.active.similar("zzz", 1) is None
