"""Drives rfidgw's SIP2 face with the PyPI `sip2` client (1.1, tzeumer/SIP2-Client-for-Python).

Usage: sip2_face_client.py PORT USER PASSWORD

Runs login, SC status, patron information, checkout, item information, renew and checkin
against the face (which relays to the ACS simulator's demo library) and prints one line
per exchange. Exits non-zero on the first answer that is not what the demo library gives.
"""

import sys

from Sip2.sip2 import Sip2


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    sip = Sip2()
    sip.hostName = "127.0.0.1"
    sip.hostPort = port
    sip.tlsEnable = False  # the face speaks plain TCP here (TLS is its own test)
    sip.socketTimeout = 20
    sip.institutionId = "DEMO"
    sip.scLocation = "interop"
    sip.logfile_path = ""
    sip.loglevel = "WARNING"
    sip.connect()

    def exchange(name, request, parse):
        raw = sip.get_response(request)
        parsed = parse(raw)
        print(f"{name}: {raw.strip()!r}", flush=True)
        return parsed

    login = exchange("login", sip.sip_login_request(user, password), sip.sip_login_response)
    assert login["fixed"]["Ok"] == "1", login

    status = exchange("sc status", sip.sip_sc_status_request(), sip.sip_sc_status_response)
    assert status["fixed"]["OnlineStatus"] == "Y", status

    sip.patron = "P1001"
    sip.patronpwd = "1234"
    info = exchange(
        "patron information",
        sip.sip_patron_information_request("charged"),
        sip.sip_patron_information_response,
    )
    assert info["variable"]["AE"] == ["Alice Reader"], info
    assert info["variable"]["BL"] == ["Y"], info

    out = exchange("checkout", sip.sip_checkout_request("I0002"), sip.sip_checkout_response)
    assert out["fixed"]["Ok"] == "1", out
    assert out["variable"]["AJ"] == ["Moby Dick"], out

    item = exchange(
        "item information",
        sip.sip_item_information_request("I0002"),
        sip.sip_item_information_response,
    )
    assert item["fixed"]["CirculationStatus"] == "04", item

    renew = exchange("renew", sip.sip_renew_request("I0002"), sip.sip_renew_response)
    assert renew["fixed"]["Ok"] == "1", renew

    back = exchange("checkin", sip.sip_checkin_request("I0002"), sip.sip_checkin_response)
    assert back["fixed"]["Ok"] == "1", back
    assert back["variable"]["CL"] == ["A"], back

    sip.disconnect()
    print("pypi sip2 client: all exchanges as expected", flush=True)


if __name__ == "__main__":
    main()
