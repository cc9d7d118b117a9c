"""``python -m services.gateway.staff.password``: print an argon2 hash for INTAKE_STAFF_PASSWORD_HASH.

The password is read from stdin (a prompt without echo on a terminal), never from the command line,
so it does not end up in shell history or the process list.
"""

from __future__ import annotations

import getpass
import sys

from argon2 import PasswordHasher

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Staff password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("The two passwords differ.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def main() -> None:
    password = _read_password()
    if len(password) < MIN_LENGTH:
        raise SystemExit(f"Use at least {MIN_LENGTH} characters.")
    print(hash_password(password))


if __name__ == "__main__":
    main()
