//! nom parser for SMTP command lines.

use super::command::{Command, ParseError};

/// Parses one command line, without its CRLF.
pub fn parse_command(_line: &[u8]) -> Result<Command<'_>, ParseError> {
    Err(ParseError::UnknownCommand)
}
