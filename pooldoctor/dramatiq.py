"""The worker side of ``pooldoctor inspect --runner dramatiq``, as the project imports it: one line
where its broker is set up (its broker module, or its tasks module with django-dramatiq)::

    import pooldoctor.dramatiq
    pooldoctor.dramatiq.install(dramatiq.get_broker())

or ``"pooldoctor.dramatiq.CensusMiddleware"`` first in django-dramatiq's
``DRAMATIQ_BROKER["MIDDLEWARE"]``. The code lives with the Dramatiq host
(:mod:`pooldoctor.hosts.dramatiq.install`); this module is the stable public name.
"""

from __future__ import annotations

from pooldoctor.hosts.dramatiq.install import CensusMiddleware, install

__all__ = ["CensusMiddleware", "install"]
