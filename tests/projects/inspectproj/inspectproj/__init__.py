"""A Django project whose Celery app installs pooldoctor's worker side (``pooldoctor inspect``)."""
