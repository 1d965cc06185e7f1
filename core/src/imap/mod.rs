//! IMAP4rev1 (RFC 3501) server side: the command grammar and the response encoder.
pub mod encode;
pub mod parse;
pub mod session;
pub mod types;
pub mod utf7;

pub use parse::{
    parse_append_end, parse_auth_response, parse_command, parse_idle_done, peek_tag, Limits,
    Needed, ParseError, Reason, MAX_SEARCH_DEPTH,
};
pub use types::*;
