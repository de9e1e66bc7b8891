#!/usr/bin/env python3
"""Times every newMessage delivery of a chorus run from a loopback capture.

Usage: bench/wire_latency.py CAPTURE.pcap GATEWAY_PORT SUMMARY.json [OUT.json]

Reassembles each websocket connection to the gateway port from the capture
(tcpdump -w, IPv4 on lo), parses the websocket frames in both directions
(client frames unmasked), and finds the correlation mark chorus appends to
every message text (` #chorus/<vu>/<seq>/<intended us>/<sent us>`):

- each client->gateway `sendMessage` frame: the wire send time of (vu, seq);
- each gateway->client `newMessage` frame: one delivery, timed at the packet
  that carried the frame's last byte.

It prints, side by side with chorus's own `delivery.newMessage` (from the
summary: receive time minus the intended send time), the wire latency
measured the same way (capture time of the delivery minus the intended send
time in the mark: like for like), the differences, and the gateway's own
latency on the wire (delivery minus the captured send frame).
Standard library only.
"""

import json
import math
import re
import struct
import sys

MARK = re.compile(rb" #chorus/(\d+)/(\d+)/(\d+)/(\d+)")
QUANTILES = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)]


def packets(path):
    """Yields (time in us as float, ip packet bytes) from a pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    table = {
        b"\xd4\xc3\xb2\xa1": ("<", 1.0),
        b"\xa1\xb2\xc3\xd4": (">", 1.0),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-3),
        b"\xa1\xb2\x3c\x4d": (">", 1e-3),
    }
    if magic not in table:
        sys.exit(f"{path}: not a pcap file")
    endian, frac_to_us = table[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[offset : offset + 16])
        offset += 16
        frame = data[offset : offset + incl]
        offset += incl
        if linktype == 1:  # Ethernet (lo on Linux)
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked
            ip = frame[16:]
        elif linktype == 276:  # Linux cooked v2
            ip = frame[20:]
        elif linktype == 0:  # BSD loopback
            ip = frame[4:]
        else:
            sys.exit(f"unsupported link type {linktype}")
        yield sec * 1e6 + frac * frac_to_us, ip


class Direction:
    """One direction of one TCP connection: reassembled bytes and frames."""

    def __init__(self, masked):
        self.masked = masked
        self.next_seq = None
        self.buf = bytearray()
        self.in_head = True
        self.broken = False

    def feed(self, seq, payload, t, on_text):
        if self.broken:
            return
        if self.next_seq is None:
            self.next_seq = seq
        if seq != self.next_seq:
            delta = (self.next_seq - seq) & 0xFFFFFFFF
            if delta < len(payload):  # overlaps what we have: keep the new part
                payload = payload[delta:]
            elif delta < 0x80000000:  # entirely old: a retransmission
                return
            else:  # a gap: bytes missing from the capture
                self.broken = True
                return
        self.next_seq = (self.next_seq + len(payload)) & 0xFFFFFFFF
        self.buf += payload
        self.parse(t, on_text)

    def parse(self, t, on_text):
        buf = self.buf
        pos = 0
        if self.in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            pos = end + 4
            self.in_head = False
        while True:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length = struct.unpack(">H", buf[pos + 2 : pos + 4])[0]
                head = 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length = struct.unpack(">Q", buf[pos + 2 : pos + 10])[0]
                head = 10
            mask = None
            if b1 & 0x80:
                if len(buf) - pos < head + 4:
                    break
                mask = bytes(buf[pos + head : pos + head + 4])
                head += 4
            if len(buf) - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            if b0 & 0x0F == 0x1:  # text frame (chorus sends and gets unfragmented ones)
                on_text(payload, t)
        del buf[:pos]


def quantile(sorted_values, q):
    """The value at quantile q (nearest rank, as HdrHistogram reports)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def stats(values):
    values = sorted(values)
    out = {name: quantile(values, q) for name, q in QUANTILES}
    out["max"] = values[-1] if values else None
    out["count"] = len(values)
    return out


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    capture, port, summary_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    out_path = sys.argv[4] if len(sys.argv) > 4 else None

    conns = {}
    sends = {}
    deliveries = []
    broken = 0

    def on_client_text(payload, t):
        if b'"sendMessage"' in payload:
            m = MARK.search(payload)
            if m:
                sends.setdefault((int(m[1]), int(m[2])), t)

    frames_to = {}  # client port -> capture times of every frame the gateway sent it
    current = [None]

    def on_server_text(payload, t):
        frames_to.setdefault(current[0], []).append(t)
        if b'"newMessage"' in payload:
            m = MARK.search(payload)
            if m:
                deliveries.append((int(m[1]), int(m[2]), int(m[3]), t))
                followed.append((current[0], t))

    followed = []

    for t, ip in packets(capture):
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        flags = tcp[13]
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if dport == port:
            client, to_server = sport, True
        elif sport == port:
            client, to_server = dport, False
        else:
            continue
        if flags & 0x12 == 0x02:  # SYN: a new connection on this client port
            old = conns.pop(client, None)
            if old:
                broken += old[0].broken + old[1].broken
            conns[client] = (Direction(True), Direction(False))
            conns[client][0].next_seq = (seq + 1) & 0xFFFFFFFF
            continue
        if flags & 0x12 == 0x12:  # SYN-ACK: where the server's bytes start
            if client in conns:
                conns[client][1].next_seq = (seq + 1) & 0xFFFFFFFF
            continue
        if client not in conns or not payload:
            continue
        c2s, s2c = conns[client]
        current[0] = client
        if to_server:
            c2s.feed(seq, payload, t, on_client_text)
        else:
            s2c.feed(seq, payload, t, on_server_text)
    broken += sum(d.broken for pair in conns.values() for d in pair)

    if not deliveries:
        sys.exit("no newMessage delivery found in the capture")
    from_intended = [t - intended for (_, _, intended, t) in deliveries]
    from_send = [t - sends[(vu, seq)] for (vu, seq, _, t) in deliveries if (vu, seq) in sends]
    send_lag = [sends[k] - i for k, i in {(vu, seq): intended for vu, seq, intended, _ in deliveries}.items() if k in sends]

    # A frame still waiting in the socket when the next one arrives shares
    # its kernel timestamp (TCP merges queued segments, keeping the later
    # time): how often the next frame to the same client came soon after.
    import bisect

    def next_gap(client, t):
        times = frames_to[client]
        i = bisect.bisect_right(times, t)
        return times[i] - t if i < len(times) else math.inf

    gaps = [next_gap(c, t) for c, t in followed]
    soon = {ms: sum(g <= ms * 1000 for g in gaps) / len(gaps) for ms in (1, 5)}

    with open(summary_path) as f:
        summary = json.load(f)
    ch = summary["latency"]["delivery.newMessage"]
    chorus = {"p50": ch["p50_us"], "p90": ch["p90_us"], "p99": ch["p99_us"], "max": ch["max_us"], "count": ch["count"]}
    wire = stats(from_intended)
    gateway = stats(from_send)
    lag = stats(send_lag)
    diff = {k: chorus[k] - wire[k] for k in ("p50", "p90", "p99", "max")}
    rd = summary["latency"].get("driver.read_delay")
    driver = summary.get("driver", {})

    def ms(v):
        return "-" if v is None else f"{v / 1000:.3f}"

    print(f"deliveries: chorus {chorus['count']}, on the wire {wire['count']} "
          f"({gateway['count']} matched to their captured send; {len(sends)} sends; "
          f"{broken} connection directions with bytes missing from the capture)")
    print(f"chorus rx timestamps: {driver.get('rx_timestamps', 'user (not reported: before this change)')}")
    print()
    print(f"{'ms':<44}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    rows = [
        ("chorus delivery.newMessage (from intended)", chorus),
        ("wire delivery (from intended)", wire),
        ("difference chorus - wire", diff),
        ("gateway on the wire (send frame to delivery)", gateway),
        ("send lag on the wire (intended to send frame)", lag),
    ]
    if rd:
        rows.append(("chorus driver.read_delay", {"p50": rd["p50_us"], "p90": rd["p90_us"], "p99": rd["p99_us"], "max": rd["max_us"]}))
    for name, row in rows:
        print(f"{name:<44}" + "".join(f"{ms(row[k]):>9}" for k in ("p50", "p90", "p99", "max")))
    print()
    print(f"deliveries followed by another frame to the same client within 1 ms: "
          f"{soon[1]:.1%}, within 5 ms: {soon[5]:.1%}")
    goal = abs(diff["p50"]) <= 200 and abs(diff["p99"]) <= 500
    print()
    print(f"goal (|difference| <= 0.2 ms at p50 and <= 0.5 ms at p99): {'met' if goal else 'missed'}")
    if out_path:
        with open(out_path, "w") as f:
            json.dump({"chorus": chorus, "wire": wire, "difference": diff, "gateway_wire": gateway,
                       "send_lag_wire": lag, "read_delay": rd, "rx_timestamps": driver.get("rx_timestamps"),
                       "next_frame_within_ms": soon, "sends": len(sends), "broken_directions": broken, "goal_met": goal}, f, indent=1)


if __name__ == "__main__":
    main()
