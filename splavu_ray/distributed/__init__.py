"""The Ray wing: the only package that starts or joins Ray (session.py) and imports ray, deepspeed or optuna.

Ray Data clip streams (clip_stream.py) and feature extraction (feature_job.py), the Ray Train worker with
DeepSpeed (worker.py, online_source.py, deepspeed_config.py) and its TorchTrainer (torch_trainer.py), the
run path (run.py), and sweeps on Ray Tune + Optuna (tune.py). Kept free of imports here: Ray Data's decode
actors import this package to unpickle their function, and must not pay for torch.
"""
