//! POP3 (RFC 1939) server side, with CAPA and response codes (RFC 2449, RFC 3206), STLS
//! (RFC 2595) and AUTH PLAIN (RFC 5034): the command grammar and the session state machine.
//!
//! [`parse`] reads one command line at a time from the session's input buffer, borrowing
//! every argument from it; [`session`] runs the AUTHORIZATION → TRANSACTION → UPDATE states
//! and asks the application for logins, the maildrop, message text and the final update.

pub mod parse;
pub mod session;

pub use parse::{
    parse_auth_response, parse_command, AuthResponse, Command, Limits, ParseError, Reason,
};
pub use session::{Event, Failure, Message, RespCode, Session, SessionConfig, State};
