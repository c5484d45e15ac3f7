"""A Django project on Huey through huey.contrib.djhuey (``simulate --runner huey``,
``check --task``, ``inspect --runner huey``)."""
