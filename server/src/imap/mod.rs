//! IMAP on the server side: access to stored messages for FETCH and SEARCH.
//!
//! - [`mime`]: a message file parsed into its MIME part tree (exact octet ranges), with
//!   ENVELOPE, BODYSTRUCTURE, body sections and the decoded text SEARCH looks at.
//! - [`fetch`]: [`write_fetch`] writes one `* n FETCH (...)` response.
//! - [`search`]: [`matches`] decides whether one message matches SEARCH criteria.
//!
//! Everything here blocks (it reads message files): call it from a worker thread.

pub mod fetch;
pub mod handler;
pub mod mime;
pub mod search;

pub use fetch::{write_fetch, FetchError, FetchOptions, FetchResult, MessageMeta, MessageSource};
pub use mime::{ParsedMessage, SectionData};
pub use search::{charset_supported, matches, SearchContext};
