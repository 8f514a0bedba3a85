"""Errors a person can fix (unknown email, bad amount, duplicate name): shown as one line."""


class ServiceError(Exception):
    pass
