"""A Django project on django-q2 (``simulate --runner django-q``, ``inspect --runner django-q``):
task functions sent by their dotted path, one through the leaking recipe."""
