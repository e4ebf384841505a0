"""The few places the Ray wing leans on something that is not a public Ray API, pinned so that a Ray upgrade
that moves them fails here, by name, instead of silently changing behaviour. Everything else (Optuna's
hypervolume, Tune's Optuna searcher, the sweep records) goes through public APIs or well-kept libraries."""

import logging


def test_ray_train_report_log_is_the_module_logger_we_quiet():
    # Ray Train V2 logs every ray.train.report() with its whole metrics dict at INFO through a logger named
    # after its worker-context module's file; worker._quiet_report_log raises that logger to WARNING.
    from ray.train.v2._internal.execution import context

    from splavu_ray.distributed.worker import _quiet_report_log

    assert context.logger.name == context.__file__
    _quiet_report_log()
    assert logging.getLogger(context.__file__).level == logging.WARNING


def test_ray_data_still_counts_executions_on_its_context():
    # clip_stream's one-epoch-per-execution mode seeds train clips by DataContext._execution_idx (what Ray's own
    # RandomSeedConfig(reseed_after_execution=True) uses); the behaviour across epochs is pinned end to end by
    # test_clip_stream.py::test_every_clip_arrives_exactly_once_per_epoch_across_two_nodes.
    from ray.data import DataContext

    assert isinstance(getattr(DataContext.get_current(), "_execution_idx", None), int)


def test_no_other_private_ray_or_optuna_attribute_in_the_package():
    import re
    from pathlib import Path

    pinned = {"ray.train.v2._internal.execution", "_execution_idx"}
    root = Path(__file__).resolve().parents[2] / "splavu_ray"
    found = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        found |= set(re.findall(r"ray(?:\.\w+)*\._\w+(?:\.\w+)*|optuna(?:\.\w+)*\._\w+|\b_ot_trials\b|"
                                r"\"_execution_idx\"", text))
    assert {f.strip('"') for f in found} <= pinned, found
