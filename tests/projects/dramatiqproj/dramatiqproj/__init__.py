"""A django-dramatiq project (Redis broker, DbConnectionsMiddleware, AsyncIO) for the Dramatiq
host's tests: a sync actor on the ORM, the blog recipe's leaking wrapper, and an async actor."""
