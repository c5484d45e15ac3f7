def build_databases(environ):
    databases = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "shop"}}
    if "DB_POOL_MAX" in environ:
        databases["default"]["OPTIONS"] = {"pool": {"max_size": int(environ["DB_POOL_MAX"])}}
    return databases
