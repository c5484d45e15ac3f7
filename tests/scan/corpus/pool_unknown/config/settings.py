import environ

env = environ.Env()

SECRET_KEY = env("SECRET_KEY")
INSTALLED_APPS = ["django.contrib.contenttypes", "orders"]

DATABASES = {
    "default": {
        **env.db("DATABASE_URL", default="postgres:///shop"),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "pool": env.json("DB_POOL_OPTIONS"),
        },
    }
}
