"""The SIP stack (RFC 3261), layered as the RFC is: message, transport, transaction, dialog."""
