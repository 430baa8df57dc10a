#!/usr/bin/python3
"""A GStreamer DTLS-SRTP client for the interop tests (dtlssrtpenc/dtlssrtpdec,
an OpenSSL-based DTLS and libsrtp-based SRTP stack independent of ours).

One UDP socket carries both directions (udpsrc and udpsink share a Gio.Socket),
so the relay answers to the port the handshake came from. The client sends PCMU
RTP (20 ms) as SRTP with the negotiated keys and counts the RTP it decrypts.

Usage: gst_dtls_client.py --remote-port P --pem FILE --duration S
Prints KEY=VALUE lines: LOCAL_PORT, PEER_FINGERPRINT (sha-256 of the server's
certificate, which GStreamer itself does not check), CONNECTED, RTP_RECEIVED.
"""
import argparse
import hashlib
import ssl

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gio, GLib, Gst  # noqa: E402


def say(key, value):
    print(f"{key}={value}", flush=True)


def fingerprint(pem):
    end = "-----END CERTIFICATE-----"
    der = ssl.PEM_cert_to_DER_cert(pem.split(end)[0] + end + "\n")
    h = hashlib.sha256(der).hexdigest().upper()
    return "sha-256 " + ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def element(pipe, factory, **props):
    e = Gst.ElementFactory.make(factory)
    for k, v in props.items():
        e.set_property(k.rstrip("_").replace("_", "-"), v)
    pipe.add(e)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--remote-port", type=int, required=True)
    ap.add_argument("--pem", required=True)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--ssrc", type=int, default=0x600DF00D)
    args = ap.parse_args()
    Gst.init(None)
    pem = open(args.pem).read()

    sock = Gio.Socket.new(Gio.SocketFamily.IPV4, Gio.SocketType.DATAGRAM, Gio.SocketProtocol.UDP)
    sock.bind(Gio.InetSocketAddress.new_from_string("127.0.0.1", 0), False)
    say("LOCAL_PORT", sock.get_local_address().get_port())

    pipe = Gst.Pipeline.new("dtls-client")
    src = element(pipe, "udpsrc", socket=sock, close_socket=False)
    dec = element(pipe, "dtlssrtpdec", connection_id="c", pem=pem)
    enc = element(pipe, "dtlssrtpenc", connection_id="c", is_client=True)
    out = element(pipe, "udpsink", socket=sock, close_socket=False, sync=False, async_=False,
                  host="127.0.0.1", port=args.remote_port)
    rtp = element(pipe, "fakesink", sync=False, async_=False, signal_handoffs=True)
    rtcp = element(pipe, "fakesink", sync=False, async_=False)
    src.link(dec)
    dec.get_static_pad("rtp_src").link(rtp.get_static_pad("sink"))
    dec.get_static_pad("rtcp_src").link(rtcp.get_static_pad("sink"))
    enc.link(out)

    tone = element(pipe, "audiotestsrc", is_live=True, samplesperbuffer=160)
    caps = element(pipe, "capsfilter", caps=Gst.Caps.from_string("audio/x-raw,rate=8000,channels=1"))
    law = element(pipe, "mulawenc")
    pay = element(pipe, "rtppcmupay", ssrc=args.ssrc)
    tone.link(caps)
    caps.link(law)
    law.link(pay)
    pay.link_pads("src", enc, "rtp_sink_0")

    state = {"rtp": 0, "connected": False, "fp": None}

    def on_rtp(*_):
        state["rtp"] += 1

    def on_state(obj, _):
        s = obj.get_property("connection-state")
        if getattr(s, "value_nick", str(s)) == "connected":
            state["connected"] = True

    def on_peer(obj, _):
        p = obj.get_property("peer-pem")
        if p and state["fp"] is None:
            state["fp"] = fingerprint(p)
            say("PEER_FINGERPRINT", state["fp"])

    rtp.connect("handoff", on_rtp)
    dec.connect("notify::connection-state", on_state)
    dec.connect("notify::peer-pem", on_peer)

    loop = GLib.MainLoop()
    bus = pipe.get_bus()
    bus.add_signal_watch()

    def on_message(_, m):
        if m.type == Gst.MessageType.ERROR:
            err, dbg = m.parse_error()
            say("ERROR", f"{err.message} ({dbg})")
            loop.quit()

    bus.connect("message", on_message)
    pipe.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(args.duration * 1000), loop.quit)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    say("CONNECTED", "yes" if state["connected"] else "no")
    say("RTP_RECEIVED", state["rtp"])


if __name__ == "__main__":
    main()
