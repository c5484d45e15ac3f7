"""Database settings shared by every environment."""
import os


def database_options(application_name):
    return {
        "application_name": application_name,
        "pool": {
            "min_size": int(os.environ.get("DB_POOL_MIN", "1")),
            "max_size": int(os.environ.get("DB_POOL_MAX", "8")),
            "timeout": 5,
        },
    }
