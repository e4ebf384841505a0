"""Toy feature stores for tests (a plain module, not conftest: two conftest.py files share that name)."""

import numpy as np


def make_toy_store(root, n_train=64, n_val=32, n_test=32, dim=32, clips=2, static=4, actions=4, seed=0):
    """A feature store of Gaussian features: the action lives in one subspace (moving clips only),
    a private attribute in another (clips and static clips). Enough to train and test the loop."""
    from splavu_ray.data.feature_store import FeatureStore, feature_row

    rng = np.random.default_rng(seed)
    act_dirs = rng.normal(size=(actions, dim))
    att_dir = rng.normal(size=dim)
    store = FeatureStore(str(root))
    rows = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test), ("privacy_train", n_train), ("privacy_test", n_test)):
        for i in range(n):
            a, p = int(rng.integers(actions)), int(rng.integers(2))
            appearance = (2 * p - 1) * att_dir
            c = rng.normal(size=(clips, dim)) * 0.5 + act_dirs[a] + appearance
            s = rng.normal(size=(static, dim)) * 0.5 + appearance
            man = {"uri": f"/toy/{split}/{i}.mp4", "dataset": "toy", "split": split, "media": "video",
                   "action": f"a{a}", "action_id": a, "private_attributes": ["attr_p"] if p else [],
                   "subject_id": str(i % 7), "gender": "f" if p else "m"}
            rows.append(feature_row(man, c, s))
    store.write_shard(0, rows)
    store.write_meta({"num_shards": 1, "num_rows": len(rows), "dim": dim, "actions": [f"a{i}" for i in range(actions)],
                      "attributes": ["attr_p"], "backbone": {"name": "toy", "embed_dim": dim}})
    return store
