"""Offers written out by hand (no peer connection, so no namespace needed): what a browser sends, and worse."""

from __future__ import annotations

FINGERPRINT = ":".join(f"{i:02X}" for i in range(32))
_HEAD = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
_TRANSPORT = ("c=IN IP4 0.0.0.0\r\na=ice-ufrag:Xq3b\r\na=ice-pwd:4n0TwW1d1Kbo3Zq8tLqv0Ybb\r\n"
              f"a=fingerprint:sha-256 {FINGERPRINT}\r\na=setup:actpass\r\n")


def audio_section(mid: int) -> str:
    return (f"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n{_TRANSPORT}a=mid:{mid}\r\na=sendrecv\r\na=rtcp-mux\r\n"
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n")


def data_section(mid: int) -> str:
    return (f"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n{_TRANSPORT}a=mid:{mid}\r\n"
            "a=sctp-port:5000\r\na=max-message-size:262144\r\n")


def browser_offer() -> str:
    """One audio and one data channel, as the guest page offers."""
    return _HEAD + "a=group:BUNDLE 0 1\r\n" + audio_section(0) + data_section(1)


def offer_with_audio_sections(count: int) -> str:
    """``count`` audio m-lines (the issue's 250-m-line offer was 29 KB)."""
    mids = " ".join(str(i) for i in range(count))
    return _HEAD + f"a=group:BUNDLE {mids}\r\n" + "".join(audio_section(i) for i in range(count))
