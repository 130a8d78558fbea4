//! The on-disk state of bot-bottle under `$BOT_BOTTLE_HOME` (default
//! `~/.bot-bottle`): the layout, per-bottle state directories with their
//! `metadata.json` resume record and `.preserve` marker, and identities.
//!
//! Owns file modes (state dirs 0700, secret files 0600) and backward
//! compatibility of `metadata.json` with files older versions wrote.
//! Knows nothing of what manifests mean or how bottles run.

#![forbid(unsafe_code)]

mod end_lock;
mod home;
mod identity;
mod metadata;
mod state_dir;

pub use end_lock::EndLock;
pub use home::{Home, HomeError};
pub use identity::{IdentityError, mint_identity, random_suffix, slugify};
pub use metadata::{BottleMetadata, MetadataError};
pub use state_dir::{COMPONENTS, StateDir, StateError};
