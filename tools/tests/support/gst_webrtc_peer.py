#!/usr/bin/python3
"""A WebRTC peer for the gateway's ICE-lite test: GStreamer webrtcbin (libnice
full ICE agent, OpenSSL DTLS, libsrtp) negotiates with the gateway through SDP
files, runs ICE connectivity checks against the gateway, the DTLS handshake,
and then sends PCMU audio as SRTP while it counts the RTP it decrypts.

Usage: gst_webrtc_peer.py --role answer|offer --offer FILE --answer FILE
                          --duration S [--ssrc N]

--role answer: reads the offer from its FILE, writes the answer to its FILE.
--role offer: writes the offer to its FILE, then waits for the answer FILE.
What the script writes goes to FILE.tmp first and is renamed, as soon as
webrtcbin has it (no waiting for candidates: the gateway is ICE-lite and learns
the peer's address from its checks). Media runs for S seconds once both
descriptions are set; the script always exits by itself (a hard deadline of
S + 20 s).

Prints KEY=VALUE lines: OFFER / ANSWER (written), ICE_CONNECTION_STATE,
ICE_GATHERING_STATE, PEER_CONNECTION_STATE, DTLS_STATE (on every change),
LOCAL_CANDIDATE, RTP_RECEIVED (RTP buffers out
of webrtcbin: decrypted SRTP), RTP_PT (their payload type), ERROR.
Exit status 0 when media was received, 1 otherwise (2: bad setup).
"""
import argparse
import os
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


_SAY = threading.Lock()


def say(key, value):
    # GStreamer calls back from several threads: one whole line at a time.
    with _SAY:
        print(f"{key}={value}", flush=True)


def make(pipe, factory, **props):
    e = Gst.ElementFactory.make(factory)
    if e is None:
        say("ERROR", f"no GStreamer element {factory}")
        sys.exit(2)
    for k, v in props.items():
        e.set_property(k.rstrip("_").replace("_", "-"), v)
    pipe.add(e)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", choices=["answer", "offer"], default="answer")
    ap.add_argument("--offer", required=True)
    ap.add_argument("--answer", required=True)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--ssrc", type=int, default=0x0BADCAFE)
    args = ap.parse_args()
    Gst.init(None)
    deadline = time.monotonic() + args.duration + 20

    pipe = Gst.Pipeline.new("webrtc-peer")
    web = make(pipe, "webrtcbin", bundle_policy=GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)

    # Audio out: a tone as PCMU, into a send-receive transceiver.
    tone = make(pipe, "audiotestsrc", is_live=True, samplesperbuffer=160, wave="sine")
    raw = make(pipe, "capsfilter",
               caps=Gst.Caps.from_string("audio/x-raw,rate=8000,channels=1"))
    law = make(pipe, "mulawenc")
    pay = make(pipe, "rtppcmupay", ssrc=args.ssrc, pt=0)
    rtp_caps = make(pipe, "capsfilter", caps=Gst.Caps.from_string(
        "application/x-rtp,media=audio,encoding-name=PCMU,payload=0,clock-rate=8000"))
    chain = [tone, raw, law, pay, rtp_caps, web]
    for a, b in zip(chain, chain[1:]):
        if not a.link(b):
            say("ERROR", f"cannot link {a.get_name()} to {b.get_name()}")
            sys.exit(2)

    state = {"rtp": 0, "pt": None, "negotiated": False, "dtls": {}}
    loop = GLib.MainLoop()

    def count(_sink, buf, _pad):
        state["rtp"] += 1
        if state["pt"] is None:
            ok, info = buf.map(Gst.MapFlags.READ)
            if ok:
                if len(info.data) >= 2:
                    state["pt"] = info.data[1] & 0x7F
                    say("RTP_PT", state["pt"])
                buf.unmap(info)

    def on_pad(_web, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        sink = make(pipe, "fakesink", sync=False, async_=False, signal_handoffs=True)
        sink.connect("handoff", count)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        say("PAD", pad.get_name())

    web.connect("pad-added", on_pad)

    def on_state(obj, pspec):
        say(pspec.name.upper().replace("-", "_"), obj.get_property(pspec.name).value_nick)
        if pspec.name == "ice-connection-state":
            report_transport()

    for p in ("ice-connection-state", "ice-gathering-state", "connection-state"):
        web.connect("notify::" + p, on_state)

    def on_candidate(_web, _mline, cand):
        say("LOCAL_CANDIDATE", cand)

    web.connect("on-ice-candidate", on_candidate)

    def report_transport():
        # The DTLS transport of each transceiver: its state changes.
        for t in transceivers():
            dt = t.get_property("sender").get_property("transport")
            if dt is None or dt in state["dtls"]:
                continue
            state["dtls"][dt] = True
            dt.connect("notify::state", lambda o, _p: say(
                "DTLS_STATE", o.get_property("state").value_nick))
    # (webrtcbin's ice-agent property is not read: PyGObject drops a reference
    # it does not own, which destroys the agent under webrtcbin.)

    def transceivers():
        out, i = [], 0
        while True:
            t = web.emit("get-transceiver", i)
            if t is None:
                return out
            out.append(t)
            i += 1

    def write(path, text, key):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        say(key, path)

    def parse(path, kind):
        ok, msg = GstSdp.SDPMessage.new_from_text(open(path).read())
        if ok != GstSdp.SDPResult.OK:
            say("ERROR", f"{path} does not parse as SDP")
            loop.quit()
            return None
        return GstWebRTC.WebRTCSessionDescription.new(kind, msg)

    def negotiated():
        # Both descriptions set: media for the given duration.
        state["negotiated"] = True
        report_transport()
        GLib.timeout_add(int(args.duration * 1000), loop.quit)

    def failed(promise, what):
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            say("ERROR", f"{what}: {reply.get_value('error')}")
            loop.quit()
            return True
        return False

    # --role answer: the remote offer, then our answer.
    def on_answer(promise, _data):
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            say("ERROR", f"create-answer failed: {reply.to_string() if reply else 'no reply'}")
            loop.quit()
            return
        web.emit("set-local-description", answer, Gst.Promise.new())
        write(args.answer, answer.sdp.as_text(), "ANSWER")
        negotiated()

    def on_remote_offer(promise, _data):
        if failed(promise, "set-remote-description"):
            return
        for t in transceivers():
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDRECV)
        web.emit("create-answer", None, Gst.Promise.new_with_change_func(on_answer, None))

    # --role offer: our offer, then the remote answer once its file is there.
    def on_offer(promise, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            say("ERROR", f"create-offer failed: {reply.to_string() if reply else 'no reply'}")
            loop.quit()
            return
        web.emit("set-local-description", offer, Gst.Promise.new())
        write(args.offer, offer.sdp.as_text(), "OFFER")
        GLib.timeout_add(50, poll_answer)

    def poll_answer():
        if not os.path.exists(args.answer):
            return True
        answer = parse(args.answer, GstWebRTC.WebRTCSDPType.ANSWER)
        if answer is not None:
            web.emit("set-remote-description", answer,
                     Gst.Promise.new_with_change_func(on_remote_answer, None))
        return False

    def on_remote_answer(promise, _data):
        if not failed(promise, "set-remote-description (answer)"):
            negotiated()

    def on_negotiation_needed(_web):
        if args.role == "offer" and not state.get("offered"):
            state["offered"] = True
            web.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    web.connect("on-negotiation-needed", on_negotiation_needed)
    pipe.set_state(Gst.State.PLAYING)
    if args.role == "answer":
        offer = parse(args.offer, GstWebRTC.WebRTCSDPType.OFFER)
        if offer is None:
            sys.exit(2)
        web.emit("set-remote-description", offer,
                 Gst.Promise.new_with_change_func(on_remote_offer, None))

    def watchdog():
        if time.monotonic() > deadline:
            say("ERROR", "deadline")
            loop.quit()
            return False
        return True

    GLib.timeout_add(500, watchdog)
    bus = pipe.get_bus()
    bus.add_signal_watch()

    def on_error(_bus, msg):
        err, dbg = msg.parse_error()
        say("ERROR", f"{msg.src.get_name()}: {err.message} ({dbg})".replace("\n", " "))

    bus.connect("message::error", on_error)
    loop.run()
    say("RTP_RECEIVED", state["rtp"])
    pipe.set_state(Gst.State.NULL)
    sys.exit(0 if state["rtp"] > 0 and state["negotiated"] else 1)


if __name__ == "__main__":
    main()
