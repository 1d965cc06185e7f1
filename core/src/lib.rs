//! ironpost's protocol core: parsers and session state machines for SMTP, with the TLS layer
//! that carries them. Sans-IO: bytes in, events out, bytes to send, timers. Nothing here
//! opens a socket or a file, reads a clock or spawns a thread.

pub mod imap;
pub mod pop3;
pub mod scan;
pub mod service;
pub mod smtp;
pub mod tls;
