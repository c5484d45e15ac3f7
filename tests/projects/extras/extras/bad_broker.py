"""Celery apps whose broker URL is malformed, for inspect's bad-input tests (the password must
never show)."""

from celery import Celery

unclosed_ipv6 = Celery("unclosed_ipv6", broker="redis://u:s3cr3t-pw@[::1/0")
port_not_a_number = Celery("port_not_a_number", broker="redis://u:s3cr3t-pw@localhost:abc/0")
port_out_of_range = Celery("port_out_of_range", broker="amqp://u:s3cr3t-pw@localhost:99999//")
