"""The worker side of ``pooldoctor inspect --runner django-tasks``, as the project imports it: one
line where its apps are ready (an ``AppConfig.ready()``)::

    import pooldoctor.tasks
    pooldoctor.tasks.install()

The code lives with the Django's Tasks host (:mod:`pooldoctor.hosts.tasks.install`); this module
is the stable public name.
"""

from __future__ import annotations

from pooldoctor.hosts.tasks.install import install

__all__ = ["install"]
