#!/usr/bin/python3
"""A WebRTC peer for the gateway's ICE-lite test: GStreamer webrtcbin (libnice
full ICE agent, OpenSSL DTLS, libsrtp) takes the gateway's SDP offer, answers
it, runs ICE connectivity checks against the gateway, the DTLS handshake, and
then sends PCMU audio as SRTP while it counts the RTP it decrypts.

Usage: gst_webrtc_peer.py --offer FILE --answer FILE --duration S [--ssrc N]

The answer is written to FILE (atomically: FILE.tmp, then renamed) as soon as
webrtcbin has it (candidates do not matter: the gateway is ICE-lite and learns
the peer's address from its checks). Media runs for S seconds after the offer
was applied; the script always exits by itself (a hard deadline of S + 20 s).

Prints KEY=VALUE lines: ANSWER (the answer was written), ICE_CONNECTION_STATE,
ICE_GATHERING_STATE, PEER_CONNECTION_STATE, DTLS_STATE (on every change),
LOCAL_CANDIDATE, RTP_RECEIVED (RTP buffers out
of webrtcbin: decrypted SRTP), RTP_PT (their payload type), ERROR.
Exit status 0 when media was received, 1 otherwise.
"""
import argparse
import os
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def say(key, value):
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
    ap.add_argument("--offer", required=True)
    ap.add_argument("--answer", required=True)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--ssrc", type=int, default=0x0BADCAFE)
    args = ap.parse_args()
    Gst.init(None)
    deadline = time.monotonic() + args.duration + 20

    offer_text = open(args.offer).read()
    ok, offer_msg = GstSdp.SDPMessage.new_from_text(offer_text)
    if ok != GstSdp.SDPResult.OK:
        say("ERROR", "the offer does not parse as SDP")
        sys.exit(2)

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

    state = {"rtp": 0, "pt": None, "answer": False, "dtls": {}}
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

    def write_answer(text):
        tmp = args.answer + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, args.answer)
        state["answer"] = True
        say("ANSWER", args.answer)

    def on_answer(promise, _data):
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            say("ERROR", f"create-answer failed: {reply.to_string() if reply else 'no reply'}")
            loop.quit()
            return
        web.emit("set-local-description", answer, Gst.Promise.new())
        write_answer(answer.sdp.as_text())
        report_transport()
        GLib.timeout_add(int(args.duration * 1000), loop.quit)

    def on_remote(promise, _data):
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            say("ERROR", f"set-remote-description: {reply.get_value('error')}")
            loop.quit()
            return
        for t in transceivers():
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDRECV)
        web.emit("create-answer", None, Gst.Promise.new_with_change_func(on_answer, None))

    pipe.set_state(Gst.State.PLAYING)
    offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, offer_msg)
    web.emit("set-remote-description", offer, Gst.Promise.new_with_change_func(on_remote, None))

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
    sys.exit(0 if state["rtp"] > 0 and state["answer"] else 1)


if __name__ == "__main__":
    main()
