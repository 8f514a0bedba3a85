"""A real SMTP server (aiosmtpd) for the tests of the console's mail: every message it receives is
kept, and a test waits for the one sent to an address."""
from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from harness import free_port


class MailServer:
    def __init__(self):
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.messages: list[EmailMessage] = []
        self._received = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> MailServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    async def handle_DATA(self, _server, _session, envelope):  # noqa: N802 (aiosmtpd's handler name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._received:
            self.messages.append(message)
            self._received.notify_all()
        return "250 OK"

    def wait_for(self, to: str, subject: str = "", timeout: float = 20, after: int = 0) -> EmailMessage:
        """The first message (from the after-th on) to address `to` whose subject contains
        `subject`; fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._received:
            while True:
                for message in self.messages[after:]:
                    if to.lower() in message["To"].lower() and subject in message["Subject"]:
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail to {to} with {subject!r} in its subject")
                self._received.wait(left)

    def sent_to(self, to: str) -> list[EmailMessage]:
        with self._received:
            return [message for message in self.messages if to.lower() in message["To"].lower()]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def link_in(message: EmailMessage, path: str) -> str:
    """The URL in the message's text whose path starts with `path` (e.g. /console/verify/)."""
    found = re.search(r"https?://\S+" + re.escape(path) + r"\S*", text_of(message))
    assert found, f"no {path} link in: {text_of(message)}"
    return found.group(0)
