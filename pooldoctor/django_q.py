"""The worker side of ``pooldoctor inspect --runner django-q``, as the project calls it, in an
``AppConfig.ready()`` (qcluster loads it before it forks its workers)::

    import pooldoctor.django_q
    pooldoctor.django_q.install()

The code lives with the django-q host (:mod:`pooldoctor.hosts.django_q.install`); this module is
the stable public name.
"""

from __future__ import annotations

from pooldoctor.hosts.django_q.install import install

__all__ = ["install"]
