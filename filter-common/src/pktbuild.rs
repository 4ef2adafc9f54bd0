//! Packet builder for tests (host only).
