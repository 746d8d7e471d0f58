"""Media: what the RTP streams carry, prepared once per test and replayed by every endpoint.

``g711``      PCMU/PCMA in pure Python (built in, no native library)
``signal``    generated audio: tone and a speech-like signal (the default with no file)
``dtmf``      RFC 4733 telephone-events
``video``     a generated video test pattern
``fetch``     media files from http(s):// and file:// URLs (treq), checked and size-limited
``cache``     the MEDIA_CACHE_DIR cache, by URL and content hash, size-bounded
``encode``    decoding and encoding once per test with PyAV: G.722, Opus, VP8, H.264
``packetize`` RTP payload formats: RFC 7741 (VP8), RFC 6184 (H.264), RFC 7587 (Opus)
``prepared``  PreparedMedia: the payload list every stream replays
``call_media``  the SIP call's MediaSession: SDP offer/answer and the RTP streams
"""
