#!/usr/bin/env python3
"""Delay line for `lab.sh fault X delay MS` on kernels without sch_netem.

lab.sh diverts every frame leaving the PE's rtr0 (an nftables netdev egress `fwd`) into a veth
pair; this process reads those frames from the pair's far end, holds each one for the delay and
sends it out of rtr0 again carrying MARK, which the egress rule lets through. Frames keep their
order. Usage: lab_delay.py IN_DEV OUT_DEV DELAY_MS MARK
"""

import collections
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
SO_MARK = 36
MAX_FRAME = 65536


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    in_dev, out_dev = sys.argv[1], sys.argv[2]
    delay = int(sys.argv[3]) / 1000.0
    mark = int(sys.argv[4], 0)
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.bind((in_dev, 0))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
    tx.bind((out_dev, 0))
    # lab.sh diverts frames here only once this line is in the log.
    print("ready", flush=True)
    queue: collections.deque = collections.deque()
    while True:
        timeout = None if not queue else max(0.0, queue[0][0] - time.monotonic())
        readable, _, _ = select.select([rx], [], [], timeout)
        if readable:
            frame, addr = rx.recvfrom(MAX_FRAME)
            # Frames leaving in_dev show up here too; only arrivals are to be delayed.
            if addr[2] != socket.PACKET_OUTGOING:
                queue.append((time.monotonic() + delay, frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, frame = queue.popleft()
            try:
                tx.send(frame)
            except OSError:
                # Carrier down or frame too big: the wire would have lost it too.
                pass


if __name__ == "__main__":
    main()
