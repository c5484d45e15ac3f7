import pytest

EXPECTED_DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "CONN_MAX_AGE": 600,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 4}},
    }
}


@pytest.fixture
def pooled_settings(settings):
    settings.DATABASES = EXPECTED_DATABASES
    return settings
