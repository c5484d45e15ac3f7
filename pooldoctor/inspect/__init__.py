"""``pooldoctor inspect``: the census of a running Celery fleet, asked for over its own broker.

fleet (ask the workers) → server (pg_stat_activity) → judge (verdicts, findings) → report.
"""
