//! IMAP4rev1 (RFC 3501) server side: the command grammar, the response encoder and the
//! session state machine.
//!
//! # Parsing commands
//!
//! The parser works on the session's input buffer as it fills, and never needs more than
//! one command in it. Call [`parse_command`] on the unconsumed input whenever bytes arrive:
//!
//! ```text
//! parse_command(&buf, &limits) ->
//!   Ok((n, command))                          drop n octets, run the command
//!   Err(Incomplete(Needed::Line))             wait for more input
//!   Err(Incomplete(Needed::Literal { size, sync, offset }))
//!                                             a literal's octets start at buf[offset]: if sync,
//!                                             send "+ ..." once for this offset; wait for more
//!   Err(Bad { tag, consumed, reason })        "<tag> BAD <reason>" (or "* BAD"); drop consumed
//!   Err(TooLong { tag })                      BAD; discard input through the next LF
//!   Err(LiteralTooLarge { tag, size, sync, consumed })
//!                                             BAD/NO; drop consumed; if !sync the client
//!                                             sends the octets anyway: best to close
//! ```
//!
//! The parse is restartable: it keeps no state between calls, and re-reads the command from
//! its start each time (bounded by [`Limits`]), so every split of the input behaves the same.
//! Whether a synchronising literal's continuation has been sent is the session's to
//! remember, by `offset`. Literals in ordinary commands are bounded by
//! [`Limits::max_literal`] and parsed in place: every string in the [`Command`] borrows from
//! the buffer (only a quoted string with backslash escapes is unescaped into a copy).
//! [`Command::into_owned`] detaches a command that must outlive the buffer.
//!
//! ## APPEND streams its message
//!
//! For `APPEND mailbox [flags] [date-time] {size}` the parser stops at the message literal:
//! [`parse_command`] returns [`CommandBody::Append`] as soon as the line announcing the literal
//! is complete, with `n` covering that line, and the literal's `size` and `sync` in
//! `message`. The message (possibly 50 MB) is never buffered by the parser and no limit
//! applies to it: the session checks the size against its own limit, sends `+ Ready for
//! literal data` if `sync` (or refuses with a tagged NO, after which the client sends
//! nothing), streams exactly `size` octets to the store, then calls [`parse_append_end`] for
//! the CRLF that ends the command. MULTIAPPEND and CATENATE are not supported: anything
//! after the literal but the CRLF is BAD.
//!
//! RFC 6855's UTF8 data extension, `APPEND mailbox [flags] [date-time] UTF8 (~{size}` (or
//! `~{size+}`), streams the same way: `utf8` is set in the command, and the message is
//! followed by `)` and the CRLF ([`parse_append_utf8_end`]).
//!
//! ## Continuation lines
//!
//! [`parse_idle_done`] reads the `DONE` that ends IDLE (RFC 2177); [`parse_auth_response`]
//! reads a client's answer to an AUTHENTICATE challenge (base64, empty, or `*` to cancel).
//! Their BAD errors carry no tag: the session uses the tag of the command in progress.
//!
//! ## Lexical notes
//!
//! Lines end with CRLF or a bare LF. Command names, keywords, flags, search keys, fetch
//! attributes, month names and `INBOX` are case-insensitive. Quoted strings may carry UTF-8
//! (RFC 6855); literals carry any octet but NUL. Literals are `{N}` (synchronising) or
//! `{N+}` (LITERAL+, RFC 7888, any size up to the limits). `\Recent` is refused in STORE and
//! APPEND. SEARCH nesting is bounded by [`MAX_SEARCH_DEPTH`]. Mailbox names are kept as sent
//! (modified UTF-7, or UTF-8 once the client enabled UTF8=ACCEPT); [`Mailbox::decode`] and
//! [`utf7`] convert them, [`Mailbox::as_utf8`] takes them as UTF-8.
//!
//! # Writing responses
//!
//! [`encode`] writes every response into a caller's `Vec<u8>`: [`encode::status`] for
//! tagged and untagged OK/NO/BAD/PREAUTH/BYE with their response codes,
//! [`encode::continuation`], [`encode::Data`] for untagged data, and
//! [`encode::FetchWriter`] for FETCH responses whose body literals the caller streams.

pub mod encode;
pub mod parse;
pub mod session;
pub mod types;
pub mod utf7;

pub use parse::{
    parse_append_end, parse_append_utf8_end, parse_auth_response, parse_command, parse_idle_done,
    peek_tag, Limits, Needed, ParseError, Reason, MAX_SEARCH_DEPTH,
};
pub use types::*;
