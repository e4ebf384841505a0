"""Data without Ray: manifests and their builders, PyAV decoding, clip sampling and transforms, the built-in
synthetic dataset, input validation, the feature store, and untrimmed videos as feature sequences."""
