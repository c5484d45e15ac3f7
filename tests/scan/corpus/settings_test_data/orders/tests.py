from django.test import SimpleTestCase, override_settings

from config.dbsettings import build_databases

POOLED = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "OPTIONS": {"pool": {"max_size": 4}},
    }
}


class BuildDatabasesTests(SimpleTestCase):
    def test_pool_from_environment(self):
        expected = {"OPTIONS": {"pool": {"max_size": 4}}}
        self.assertEqual(build_databases({"DB_POOL_MAX": "4"})["default"]["OPTIONS"],
                         expected["OPTIONS"])

    @override_settings(DATABASES=POOLED)
    def test_override(self):
        self.assertIn("pool", POOLED["default"]["OPTIONS"])
