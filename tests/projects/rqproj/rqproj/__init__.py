"""A django-rq project: job functions on RQ's @job (django-rq's), one through the leaking recipe,
and a worker class with pooldoctor's census installed (``pooldoctor inspect --runner rq``)."""
