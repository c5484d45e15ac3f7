"""``async_to_sync`` with no cleanup after it.

The shape of cosmic-onyx/AdCampaignManager's ``src/tasks/utils.py`` (``async_to_sync_task``):
the ORM comes back to the task's thread and keeps its connection there: pinned.
"""

from asgiref.sync import async_to_sync


def async_to_sync_task(func):
    def wrapper(*args, **kwargs):
        return async_to_sync(func)(*args, **kwargs)

    return wrapper
