"""``pooldoctor scan``: find leaking patterns in source, without importing or running it.

The pipeline mirrors ``check``: discover and read files (:mod:`.source`; what a working tree holds
besides source, :mod:`.files` skips and lists with its reason), gather project-wide facts once
(:mod:`.facts`: is a pool configured, which Celery version, does the project fork workers), run
every registered check over every file (:mod:`.checks`), drop suppressed findings, render.
"""
