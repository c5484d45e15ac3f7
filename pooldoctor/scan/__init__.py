"""``pooldoctor scan``: find leaking patterns in source, without importing or running it.

The pipeline mirrors ``check``: discover files (:mod:`.source`), gather project-wide facts once
(:mod:`.facts`: is a pool configured, which Celery version, does the project fork workers), run
every registered check over every file (:mod:`.checks`), drop suppressed findings, render.
"""
