"""Metrics, each a small pure function on arrays: classification (AP, cMAP, top-1, group gaps, retrieval),
temporal detection (THUMOS mAP) and anomaly detection (frame-level AUC)."""
