//! What the agent's side of a bottle takes from its sidecar's servers, so
//! that a backend builds it against this crate alone: the bottle CA the
//! agent trusts (egress mints leaves from it), the placeholder it holds
//! where a token goes and the canary planted in its environment (egress's
//! DLP swaps the one and refuses the other), the gitconfig that sends its
//! pushes to git-gate, and the checks a plan makes on a repo's upstream.
//!
//! Re-exports only: each item's home is the server crate that gives it
//! meaning.

pub use dlp::{Canary, PLACEHOLDER, mask};
pub use egress::ca::BottleCa;
pub use git_gate::gitconfig::agent_gitconfig;
pub use git_gate::ssh::SshUrl;
