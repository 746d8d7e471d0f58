"""Media plane payloads: built-in codecs, generated default signals and telephone-events.

- :mod:`callmeter.media.g711` -- PCMU and PCMA (ITU-T G.711), pure Python, table driven.
- :mod:`callmeter.media.signal` -- the default audio when a test has no media file: a test
  tone and a deterministic speech-like signal (ITU-T P.50 inspired), 16-bit PCM.
- :mod:`callmeter.media.dtmf` -- RFC 4733 telephone-event payloads and the packet sequence
  of one digit, sans-IO.
"""
