"""A small ACS built on pysip2 0.1.0 (PyPI), used as a real third-party SIP2 server.

It listens on 127.0.0.1, port 0, prints the bound port on stdout (one line), and serves
until stdin closes or the process is killed. Started by crates/sip2/tests/pysip2_interop.rs.

Library: login rfidgw / interop-pw, institution INTEROP, patron PT-1 (Interop Patron),
items IT-1 "Interop Book" (on the shelf) and IT-2 "Second Book" (charged to PT-1).
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import anyio
from anyio.to_thread import run_sync

from pysip2 import (
    CHECKIN,
    CHECKOUT,
    ITEM_INFORMATION,
    LOGIN,
    CheckinResponse,
    CheckoutResponse,
    ItemInformationResponse,
    LoginResponse,
    SIP2Server,
)

USER, PASSWORD = "rfidgw", "interop-pw"
PATRONS = {"PT-1": "Interop Patron"}
ITEMS = {
    "IT-1": {"title": "Interop Book", "charged_to": None, "due": None},
    "IT-2": {"title": "Second Book", "charged_to": "PT-1", "due": "20990101    120000"},
}


def now18(delta_days: int = 0) -> str:
    t = datetime.now() + timedelta(days=delta_days)
    return t.strftime("%Y%m%d") + "    " + t.strftime("%H%M%S")


app = SIP2Server(
    institution_id="INTEROP",
    library_name="pysip2 interop ACS",
    login_required=True,
    error_detection="auto",
    encoding="cp850",
)


@app.route(LOGIN)
def login(req, ctx):
    ok = req.login_user_id == USER and req.login_password == PASSWORD
    return LoginResponse(ok="1" if ok else "0")


@app.route(CHECKOUT)
def checkout(req, ctx):
    item = ITEMS.get(req.item_identifier)
    ok = (
        item is not None
        and req.patron_identifier in PATRONS
        and item["charged_to"] in (None, req.patron_identifier)
    )
    due = now18(14)
    if ok:
        item["charged_to"] = req.patron_identifier
        item["due"] = due
    return CheckoutResponse(
        ok="1" if ok else "0",
        renewal_ok="N",
        magnetic_media="N",
        desensitize="Y" if ok else "N",
        transaction_date=now18(),
        institution_id=req.institution_id,
        patron_identifier=req.patron_identifier,
        item_identifier=req.item_identifier,
        title_identifier=item["title"] if item else "",
        due_date=due if ok else "",
        screen_message=() if ok else ("Checkout refused",),
    )


@app.route(CHECKIN)
def checkin(req, ctx):
    item = ITEMS.get(req.item_identifier)
    patron = item["charged_to"] if item else None
    if item:
        item["charged_to"] = None
        item["due"] = None
    return CheckinResponse(
        ok="1" if item else "0",
        resensitize="Y" if item else "N",
        magnetic_media="N",
        alert="N" if item else "Y",
        transaction_date=now18(),
        institution_id=req.institution_id,
        item_identifier=req.item_identifier,
        permanent_location="Interop Stacks",
        title_identifier=item["title"] if item else None,
        sort_bin="B7" if item else "X",
        patron_identifier=patron,
    )


@app.route(ITEM_INFORMATION)
def item_information(req, ctx):
    item = ITEMS.get(req.item_identifier)
    if item is None:
        status = "01"
    elif item["charged_to"]:
        status = "04"
    else:
        status = "03"
    return ItemInformationResponse(
        circulation_status=status,
        security_marker="02",
        fee_type="01",
        transaction_date=now18(),
        item_identifier=req.item_identifier,
        title_identifier=item["title"] if item else "",
        due_date=item["due"] if item else None,
        permanent_location="Interop Stacks" if item else None,
    )


async def main() -> None:
    async with app.start("127.0.0.1", 0) as port:
        print(port, flush=True)
        # Serve until the test closes our stdin (or kills us).
        await run_sync(sys.stdin.read, abandon_on_cancel=True)


if __name__ == "__main__":
    anyio.run(main)
