#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the protocol vectors
(tests/vectors/*.tsv, verbatim copies of shared/vectors) and the drivers' test fixtures.

Each seed is laid out the way its fuzz target splits its input (a control byte, hints,
a split point, ...), so the campaign starts from real frames and tags instead of
discovering their structure. Run it again after the vectors change; file names are the
vector ids, so the output is stable and reviewable. Entries the campaign found
(`min-*` files, kept minimised by `scripts/fuzz-campaign --keep`) are left alone.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
CORPUS = ROOT / "fuzz" / "corpus"
HID_FIXTURES = ROOT / "drivers" / "hid" / "tests" / "fixtures"


def rows(name):
    """The data rows of a vector file as dicts keyed by its header."""
    lines = [l for l in (VECTORS / name).read_text().splitlines() if l and not l.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    (directory / f"seed-{safe}").write_bytes(bytes(data))


def tag_seeds():
    # tag_decode input: flags, AFI, DSFID, then the memory (see fuzz_targets/tag_decode.rs).
    # flags: bits 0-1 HF/UHF hint (1 UHF, 2 HF), bit 2 AFI known, bit 3 DSFID known.
    for row in rows("tags.tsv"):
        if row["model"] == "crc-ref":
            continue
        memory = bytes.fromhex(row["hex"])
        uhf = row["model"].startswith("sgtin")
        write("tag_decode", row["id"], [0x00, 0x00, 0x00] + list(memory))
        write("tag_decode", row["id"] + "-hinted", [0x05 if uhf else 0x06, 0x07, 0x00] + list(memory))
        if row["model"] == "iso28560-2":
            write("tag_decode", row["id"] + "-dsfid", [0x0E, 0xC2, 0x06] + list(memory))
    # Issue 14: an ISO 28560-2 tag whose plain re-encoding passed the ISO 28560-3 CRC, its
    # minimised form, and that re-encoding itself (reads both ways: ambiguous).
    issue14 = (
        "2a783b21016868686868686868686868686868686868686868686868686868686868686868686868686868"
        "686868686868686868686868686868686868686868686868686868686868686868686868686868686868"
        "6868686868686868686868686868686868686868680003072a7812001e0000000000002b2a0002ffffffff"
        "ff00"
    )
    write("tag_decode", "issue14", bytes.fromhex(issue14))
    old = "110144" + "68" * 31 + "00" * 78
    write("tag_decode", "issue14-old-encoding", bytes.fromhex("0a003b" + old))


def sip2_seeds():
    frames = [(r["id"], r["frame"]) for r in rows("sip2-good.tsv")]
    frames += [(r["id"], r["frame"]) for r in rows("sip2-bad-checksum.tsv")]
    for ident, frame in frames:
        data = frame.encode("latin-1") + b"\r"
        write("sip2_frame", ident, data)
        # sip2_codec: control byte (bit 0 lenient, bits 1-7 chunk size), then the stream.
        write("sip2_codec", ident, bytes([0x00]) + data)
    # Two frames in one stream, fed in 3-byte chunks, lenient: the codec's resync path.
    first, second = frames[0][1], frames[1][1]
    stream = first.encode("latin-1") + b"\r\n" + second.encode("latin-1") + b"\r"
    write("sip2_codec", "two-frames-chunked", bytes([0x07]) + stream)


def frame_seeds():
    for row in rows("frames.tsv"):
        data = bytes.fromhex(row["hex"])
        if row["protocol"] == "feig-isohost":
            # feig_frame: (split point, bytes).
            write("feig_frame", row["id"], bytes([len(data) // 2]) + data)
        elif row["protocol"] == "3m810":
            # m3m810_frame: control byte (chunk size; bit 0 lock-byte style), then bytes.
            write("m3m810_frame", row["id"], bytes([0x40]) + data)
    feig = [bytes.fromhex(r["hex"]) for r in rows("frames.tsv") if r["protocol"] == "feig-isohost"]
    write("feig_frame", "request-then-reply", bytes([5]) + feig[0] + b"\x00\x13" + feig[-1])


def hid_seeds():
    # hid_report: control (bits 0-1 layout us/uk/de/fr, bits 2-3 terminator), then
    # transfers of [len & 0x0F, time step in ms, bytes].
    layouts = {"us": 0, "uk": 1, "de": 2, "fr": 3}
    for fixture in sorted(HID_FIXTURES.glob("*.reports")):
        control = layouts[fixture.name.split("-")[0]]
        out = [control]
        last = 0
        for line in fixture.read_text().splitlines():
            fields = line.split("#")[0].split()
            if not fields:
                continue
            at, report = int(fields[0]), bytes.fromhex("".join(fields[1:]))
            out += [len(report) & 0x0F, min(at - last, 255)] + list(report)
            last = at
        write("hid_report", fixture.stem, out)


def config_seeds():
    # config_parse: (text, override) through `arbitrary`: the text's length comes from the
    # last byte(s) of the input, the override is the rest after the text.
    sections = re.split(r"\n(?=\[)", (ROOT / "config" / "rfidgw.toml").read_text())
    override = b"127.0.0.1:8080"
    for index, section in enumerate(sections):
        text = section.encode()
        if not 0 < len(text) < 200:
            continue
        data = text + override
        # One length byte when the input (with it) is at most 256 bytes: value % len.
        write("config_parse", f"rfidgw-toml-{index}", data + bytes([len(text)]))


def mqtt_seeds():
    # mqtt_payload: a selector byte (the topic: index into Channel::ALL = status, tags,
    # inputs, sorter, cmd, cmd/reply, gateway; bit 7 = sorter role), then the payload. The
    # documented examples of drivers/mqtt/README.md.
    examples = [
        ("status-online", 0, '{"state":"online"}'),
        ("status-bare", 0, "offline"),
        ("tags-arrived", 1, '{"event":"arrived","uid":"E004010031269117","afi":"07","dsfid":"00",'
         '"eas":true,"memory":"11010131313232333334340000000000000000513E4445373035000000000000",'
         '"antenna":1}'),
        ("tags-departed", 1, '{"event":"departed","uid":"E004010031269117"}'),
        ("inputs", 2, '{"levels":3,"changed":1}'),
        ("sorter", 0x83, '{"bins_full":[2],"jam":false}'),
        ("cmd-output", 4, '{"id":"5f1c2a7e-1","command":"output","beeper":"flash","red":"on",'
         '"green":"off","signal_ms":3000,"relay_ms":1500,"deadline_ms":500}'),
        ("cmd-divert", 0x84, '{"id":"5f1c2a7e-2","command":"divert","bin":3,"deadline_ms":2000}'),
        ("cmd-write-afi", 4, '{"id":"5f1c2a7e-3","command":"write_afi","uid":"E004010031269117",'
         '"afi":"C2","deadline_ms":900}'),
        ("reply-ok", 5, '{"id":"5f1c2a7e-1","ok":true}'),
        ("reply-refused", 0x85, '{"id":"5f1c2a7e-2","ok":false,"error":"diverter 3 blocked",'
         '"code":"refused","status":"03"}'),
        ("reply-read-back", 5, '{"id":"a","ok":true,"read_back":"differs","found":"07","attempts":3}'),
    ]
    for name, selector, payload in examples:
        write("mqtt_payload", name, [selector] + list(payload.encode()))


def api_seeds():
    # api_body input: the route (an index into rfidgw::api::BODY_ROUTES), then the body.
    # One body each route takes, as docs/api.md shows them, and one it refuses.
    examples = [
        ("checkout", 0, '{"patron": "P1001", "item": "I0001", "pin": "1234"}'),
        ("checkin", 1, '{"item": "I0001"}'),
        ("renew", 2, '{"patron": "P1001", "item": "I0001"}'),
        ("validate", 3, '{"patron": "P1001", "pin": "1234"}'),
        ("account", 4, '{"patron": "P1001"}'),
        ("outputs", 5, '{"red": "flash", "beeper": "on", "signal_ms": 1500, "relay_ms": 500}'),
        ("ack", 6, '{"by": "desk"}'),
        ("ack-empty", 6, ""),
        ("resolve", 7, '{"by": "desk", "resolution": "secured by hand"}'),
        ("patron", 8, '{"patron": "P1001", "pin": 98765}'),
        ("finish", 9, '{"presented": 3}'),
        ("sort-plan", 10, '{"plan": "evening"}'),
        ("sort-plan-schedule", 10, '{"plan": null}'),
        ("not-an-object", 0, '["P1001", "I0001"]'),
    ]
    for name, route, body in examples:
        write("api_body", name, [route] + list(body.encode()))


# The targets whose seeds this script writes; the others' seeds (modbus_reply, sort_plan,
# sip2_server_request) were written with their targets and are left alone.
TARGETS = (
    "tag_decode", "sip2_frame", "sip2_codec", "feig_frame", "m3m810_frame", "hid_report",
    "config_parse", "mqtt_payload", "api_body",
)


def main():
    for target in TARGETS:
        for seed in (CORPUS / target).glob("seed-*"):
            seed.unlink()
    tag_seeds()
    sip2_seeds()
    frame_seeds()
    hid_seeds()
    config_seeds()
    mqtt_seeds()
    api_seeds()
    total = sum(f.stat().st_size for f in CORPUS.rglob("*") if f.is_file())
    count = sum(1 for f in CORPUS.rglob("*") if f.is_file())
    print(f"{count} corpus files, {total} bytes under {CORPUS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
