"""A Celery app that exports pooldoctor's census as Prometheus metrics (tests/metrics)."""
