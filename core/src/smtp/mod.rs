//! SMTP server side: RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
//! SMTPUTF8, CHUNKING, STARTTLS and AUTH.

pub mod client;
pub mod command;
pub mod data;
pub mod hops;
pub mod parse;
pub mod reply;
pub mod reply_parse;
pub mod session;

pub use command::{Command, ParseError};
pub use hops::HopCounter;
pub use parse::parse_command;
pub use reply::{Enhanced, Reply};
pub use session::{Address, Answer, AuthPolicy, Event, Session, SessionConfig, StartTls};
