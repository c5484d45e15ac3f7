import multiprocessing

bind = "0.0.0.0:8000"
workers = multiprocessing.cpu_count() * 2 + 1
timeout = 30
preload_app = True
accesslog = "-"


def post_fork(server, worker):
    from django.db import connections

    for conn in connections.all():
        conn.close_pool()
