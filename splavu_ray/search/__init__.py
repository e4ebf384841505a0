"""Privacy/utility sweeps without Ray: the sweep file and its objectives, Pareto-front math, and the files a
finished study becomes. The runner that puts them on Ray Tune + Optuna is splavu_ray.distributed.tune."""
