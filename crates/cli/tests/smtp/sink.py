"""An SMTP server for the notification tests (aiosmtpd, from PyPI): STARTTLS required with the
certificate given, AUTH (PLAIN/LOGIN) required after it with the user and password given. Each
accepted message is written to OUTDIR as N.eml, headed by its envelope; prints "ready" when it
listens.

usage: sink.py CERT KEY OUTDIR USER PASSWORD PORT
"""

import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

cert, key, outdir, user, password, port = sys.argv[1:7]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(outdir) if f.endswith(".eml")])
        head = (
            f"ENVELOPE-FROM {envelope.mail_from}\n"
            f"ENVELOPE-TO {' '.join(envelope.rcpt_tos)}\n"
            f"AUTHENTICATED {session.authenticated}\n\n"
        ).encode()
        tmp = os.path.join(outdir, f"{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(tmp, os.path.join(outdir, f"{n}.eml"))
        return "250 2.0.0 stored"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok)


tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=tls,
    require_starttls=True,
    authenticator=authenticate,
    auth_require_tls=True,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
