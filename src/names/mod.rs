//! Names: the provider's own names of workspaces (projects) and API keys,
//! pulled now and then ([`refresh`]), and the display names people give
//! workspaces on top of them, with history ([`display`]).
//!
//! Names never touch money or record identity: they live in their own tables
//! (`workspace_names`, `api_key_names`, `workspace_display_names`), one row
//! per change, and the dashboards join them in. Their rows are few and carry
//! no watermark, so this module inserts them itself instead of through the
//! usage writer: a lost insert is simply observed again by the next refresh,
//! and an insert that landed twice changes nothing (the current name is the
//! latest row).

pub mod command;
pub mod display;
pub mod refresh;
pub mod store;

pub use display::{DisplayError, DisplayNames, HistoryEntry};
pub use refresh::{NamesError, NamesGate, RefreshOutcome};
