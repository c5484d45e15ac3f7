"""The worker side of ``pooldoctor inspect --runner huey``, as the project imports it: one line
where its Huey instance is at hand (djhuey's ``HUEY``)::

    from huey.contrib.djhuey import HUEY
    import pooldoctor.huey
    pooldoctor.huey.install(HUEY)

The code lives with the Huey host (:mod:`pooldoctor.hosts.huey.install`); this module is the
stable public name.
"""

from __future__ import annotations

from pooldoctor.hosts.huey.install import install

__all__ = ["install"]
