//! SMTP server side: RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
//! SMTPUTF8, CHUNKING, STARTTLS and AUTH.

pub mod command;
pub mod parse;
pub mod reply;

pub use command::{Command, ParseError};
pub use parse::parse_command;
pub use reply::{Enhanced, Reply};
