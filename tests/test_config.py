from pathlib import Path

import pytest
import yaml

from splavu_ray.config import CONFIG_DIR, Config, ConfigError, load_config, parse_overrides
from splavu_ray.run_folder import RunFolder

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_builtin_demo():
    cfg = load_config()
    assert cfg.data.dataset == "synthetic" and cfg.backbone.source == "builtin:tiny-vjepa2"
    assert (cfg.loss.w_lc, cfg.loss.w_t, cfg.loss.w_b) == (100.0, 1.0, 1.0)
    assert (cfg.adapter.layers, cfg.adapter.heads) == (3, 8)


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(None, ["optim.lr=3e-4", "adapter.kind=mlp", "scaling.use_gpu=true", f"output_dir={tmp_path}"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.adapter.kind == "mlp" and cfg.scaling.use_gpu is True
    assert cfg.output_path == tmp_path.resolve()
    assert parse_overrides(["a.b.c=1", "a.b.d=x"]) == {"a": {"b": {"c": 1, "d": "x"}}}


def test_override_wins_over_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 0.5\n  epochs: 3\n")
    cfg = load_config(f, ["optim.lr=0.25"])
    assert cfg.optim.lr == 0.25 and cfg.optim.epochs == 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("adapter.layerz=3", "unknown config key 'adapter.layerz'; allowed here: dropout, heads, kind, layers, mlp_ratio"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("adapter.kind=cnn", "config key 'adapter.kind': Input should be 'transformer', 'attention' or 'mlp'"),
        ("optim.lr=-1", "config key 'optim.lr': Input should be greater than 0"),
        ("deepspeed.zero_stage=4", "config key 'deepspeed.zero_stage'"),
        ("train.select=best", "config key 'train.select': Input should be 'val_top1' or 'last'"),
        ("eval.action.probe=svm", "config key 'eval.action.probe': Input should be 'logreg' or 'sgd'"),
        ("eval.action.probe_c_grid=[0.1,0]", "eval.action.probe_c_grid values must be > 0"),
        ("optim.batch_size=63", "divisible by scaling.num_workers"),
        ("run_name=a b", "config key 'run_name'"),
        ("optim.lr", "not of the form key=value"),
    ],
)
def test_bad_keys_and_values_are_named(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_resolved_config_is_written_and_reloads(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}/run", "optim.epochs=7"])
    path = cfg.save(RunFolder.of(cfg).config)
    assert path == tmp_path / "run" / "config.yaml"
    assert load_config(path) == cfg


def test_moved_task_settings_fail_naming_their_new_key():
    # Each evaluation task has its own section now (eval.<task>); the old keys say where they went.
    cases = {"eval.probe=sgd": "eval.action.probe", "eval.attacker_epochs=3": "eval.privacy.attacker_epochs",
             "eval.bias_manifest=x.parquet": "eval.bias.manifest", "eval.reid_split=val": "eval.reid.split",
             "loss.tad.epochs=5": "eval.tad.epochs", "loss.ad.topk=2": "eval.anomaly.topk",
             "loss.tad.videos_per_step=2": "loss.tad_videos_per_step"}
    for old, new in cases.items():
        with pytest.raises(ConfigError, match=f"'{old.split('=')[0]}' has moved to '{new}'"):
            load_config(None, [old])
    cfg = load_config(None, ["eval.action.probe=sgd", "eval.tad.epochs=5", "loss.tad_videos_per_step=2"])
    assert (cfg.eval.action.probe, cfg.eval.tad.epochs, cfg.loss.tad_videos_per_step) == ("sgd", 5, 2)


def shipped_yaml_files():
    # The folders the project ships YAML in; not the whole tree, which may hold a user's .venv or outputs.
    return sorted(p for folder in ("splavu_ray", "sweeps", "cluster") for p in (REPO / folder).rglob("*")
                  if p.suffix in (".yaml", ".yml"))


def test_every_shipped_yaml_is_valid():
    files = shipped_yaml_files()
    assert any(p.parent == CONFIG_DIR for p in files)
    for path in files:
        rel = path.relative_to(REPO)
        assert isinstance(yaml.safe_load(path.read_text()), dict), rel
        if path.parent == CONFIG_DIR:
            assert isinstance(load_config(path), Config), rel
        elif rel.parts[0] == "sweeps":  # sweep schema + every searched key against Config
            from splavu_ray.search.spec import load_sweep

            load_sweep(path)
        elif rel.parts[0] == "cluster":  # Ray's own cluster-launcher schema (what `ray up` checks)
            import copy

            from ray.autoscaler._private.util import prepare_config, validate_config

            validate_config(prepare_config(copy.deepcopy(yaml.safe_load(path.read_text()))))
        else:
            pytest.fail(f"{rel}: no validator knows this YAML file; add one to this test")


def test_report_poll_reaches_ray_train_environment():
    # Ray Train V2 reads RAY_TRAIN_HEALTH_CHECK_INTERVAL_S on the driver and passes it to its controller.
    from splavu_ray.distributed.session import worker_env

    assert worker_env(load_config())["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.25"
    assert worker_env(load_config(None, ["ray.report_poll_s=1.5"]))["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "1.5"
    with pytest.raises(ConfigError, match="ray.report_poll_s"):
        load_config(None, ["ray.report_poll_s=0"])
    with pytest.raises(ConfigError, match="optim.head_lr_scale"):
        load_config(None, ["optim.head_lr_scale=-1"])
