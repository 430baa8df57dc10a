#!/usr/bin/python3
"""A GStreamer rtpbin sender for the RTCP interop test, which reads what rtpbin
itself made of the receiver reports it got back.

Pipeline: audiotestsrc (live, 20 ms) ! mulawenc ! rtppcmupay ssrc=SSRC
! rtpbin.send_rtp_sink_0; rtpbin.send_rtp_src_0 ! udpsink (RTP port);
rtpbin.send_rtcp_src_0 ! udpsink (RTCP port); udpsrc (listen port)
! rtpbin.recv_rtcp_sink_0. The session's rtcp-min-interval is --interval-ns
(GStreamer's default is 5 s).

GStreamer keeps a report block about its own SSRC on the *remote* source that
sent it (rtpsession.c: rtp_session_process_rb), so the report blocks we send
show up in the stats of our RTCP SSRC with rb-ssrc == SSRC.

Usage: gst_rtcp_sender.py --rtp-port P --rtcp-port P --listen-port P
       [--ssrc N] [--duration S] [--interval-ns N] [--dump]
Prints KEY=VALUE lines at the end (before the pipeline stops): SSRC,
PACKETS_SENT, OCTETS_SENT, SEQNUM_BASE (of the internal source), SOURCES (remote sources),
and for the remote source holding a report block about SSRC: RB_FROM (its
SSRC), HAVE_RB, RB_SSRC, RB_FRACTIONLOST, RB_PACKETSLOST, RB_EXTHIGHESTSEQ,
RB_JITTER, RB_LSR, RB_DLSR, RB_ROUND_TRIP (GStreamer's RTT, 1/65536 s);
RB_UPDATES counts how often the observed report block changed while running
(sampled every 100 ms). --dump also prints every source's whole stats
structure to stderr. ERROR=... when the pipeline fails.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

RB_FIELDS = ["have-rb", "rb-ssrc", "rb-fractionlost", "rb-packetslost", "rb-exthighestseq",
             "rb-jitter", "rb-lsr", "rb-dlsr", "rb-round-trip"]


def say(key, value):
    print(f"{key}={value}", flush=True)


def element(pipe, factory, **props):
    e = Gst.ElementFactory.make(factory)
    if e is None:
        raise SystemExit(f"ERROR=no GStreamer element {factory}")
    for k, v in props.items():
        e.set_property(k.rstrip("_").replace("_", "-"), v)
    pipe.add(e)
    return e


def source_stats(session, ssrcs):
    """The stats structure of the internal source and of every SSRC seen.

    (The session's own `stats` carries them in a GValueArray, which PyGObject
    3.42 cannot convert: it aborts in g_nearest_pow. Sources one by one work.)
    """
    out = []
    for ssrc in sorted(ssrcs):
        src = session.emit("get-source-by-ssrc", ssrc)
        if src is not None:
            out.append(src.get_property("stats"))
    return out


def field(s, name):
    return s.get_value(name) if s.has_field(name) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtp-port", type=int, required=True)
    ap.add_argument("--rtcp-port", type=int, required=True)
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ssrc", type=int, default=287454020)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--interval-ns", type=int, default=1_000_000_000)
    ap.add_argument("--dump", action="store_true")
    args = ap.parse_args()
    Gst.init(None)

    pipe = Gst.Pipeline.new("rtcp-sender")
    rtpbin = element(pipe, "rtpbin")
    tone = element(pipe, "audiotestsrc", is_live=True, samplesperbuffer=160)
    caps = element(pipe, "capsfilter", caps=Gst.Caps.from_string("audio/x-raw,rate=8000,channels=1"))
    law = element(pipe, "mulawenc")
    pay = element(pipe, "rtppcmupay", ssrc=args.ssrc)
    rtp_out = element(pipe, "udpsink", host=args.host, port=args.rtp_port)
    rtcp_out = element(pipe, "udpsink", host=args.host, port=args.rtcp_port, sync=False, async_=False)
    rtcp_in = element(pipe, "udpsrc", address=args.host, port=args.listen_port)
    tone.link(caps)
    caps.link(law)
    law.link(pay)
    pay.get_static_pad("src").link(rtpbin.request_pad_simple("send_rtp_sink_0"))
    rtpbin.get_static_pad("send_rtp_src_0").link(rtp_out.get_static_pad("sink"))
    rtpbin.request_pad_simple("send_rtcp_src_0").link(rtcp_out.get_static_pad("sink"))
    rtcp_in.get_static_pad("src").link(rtpbin.request_pad_simple("recv_rtcp_sink_0"))
    session = rtpbin.emit("get-internal-session", 0)
    session.set_property("rtcp-min-interval", args.interval_ns)

    ssrcs = {args.ssrc}
    session.connect("on-new-ssrc", lambda _, src: ssrcs.add(src.get_property("ssrc")))

    loop = GLib.MainLoop()
    state = {"last": None, "updates": 0}

    def our_rb(sources):
        for s in sources:
            if field(s, "internal"):
                continue
            if field(s, "have-rb") and field(s, "rb-ssrc") == args.ssrc:
                return s
        return None

    def sample():
        s = our_rb(source_stats(session, set(ssrcs)))
        if s is not None:
            key = tuple(field(s, f) for f in RB_FIELDS)
            if key != state["last"]:
                state["last"] = key
                state["updates"] += 1
        return True

    def finish():
        sources = source_stats(session, set(ssrcs))
        if args.dump:
            for s in sources:
                print(s.to_string(), file=sys.stderr)
        say("SSRC", args.ssrc)
        remote = [s for s in sources if not field(s, "internal")]
        say("SOURCES", len(remote))
        for s in sources:
            if field(s, "internal") and field(s, "ssrc") == args.ssrc:
                say("PACKETS_SENT", field(s, "packets-sent"))
                say("OCTETS_SENT", field(s, "octets-sent"))
                say("SEQNUM_BASE", field(s, "seqnum-base"))
        rb = our_rb(sources)
        if rb is None:
            say("HAVE_RB", "false")
        else:
            say("RB_FROM", field(rb, "ssrc"))
            for f in RB_FIELDS:
                v = field(rb, f)
                say(f.upper().replace("-", "_"), str(v).lower() if isinstance(v, bool) else v)
        say("RB_UPDATES", state["updates"])
        loop.quit()
        return False

    bus = pipe.get_bus()
    bus.add_signal_watch()

    def on_message(_, m):
        if m.type == Gst.MessageType.ERROR:
            err, dbg = m.parse_error()
            say("ERROR", f"{err.message} ({dbg})")
            loop.quit()

    bus.connect("message", on_message)
    if pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        say("ERROR", "the pipeline does not start")
        return 1
    GLib.timeout_add(100, sample)
    GLib.timeout_add(int(args.duration * 1000), finish)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
