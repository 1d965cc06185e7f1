//! The ironpost server: configuration, accounts, Maildir storage and the glue that connects
//! the protocol core to them.

pub mod app;
pub mod commit;
pub mod config;
pub mod conn;
pub mod directory;
pub mod imap;
pub mod maildir;
pub mod mailstore;
pub mod outbound;
pub mod pop3;
pub mod queue;
pub mod received;
pub mod serve;
pub mod smtp;
pub mod tls;
