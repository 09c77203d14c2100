//! `uses:` actions, independent of how a job runs them: the host cache of downloaded actions
//! ([`cache`]: tarball download, safe unpacking, LRU) and the action manifest (`action.yml`):
//! [`manifest`] reads it as the official runner does and [`ActionManifest`] holds it, typed. Expressions in it (input defaults, composite steps, outputs, container args and
//! env) stay unevaluated template tokens: the step runtime (`crate::job`) evaluates them later
//! with the job's contexts, as `ActionRunner`/`Handler` do in the official runner.
//!
//! ```text
//! <action dir>/action.yml ──load──► YAML nodes (crate::workflow::yaml)
//!     ──manifest──► name, description, author, inputs, outputs
//!     ──runs──────► Node { main, pre, post, pre-if, post-if }
//!                 │ Composite { steps: ActionStep… } (steps::, the job message's step shape)
//!                 │ Docker { image, entrypoint, args, env, … }
//!   each value read through slots:: with the contexts the official schema allows there
//! ```
//!
//! What this module does not own: resolving actions (the protocol calls are in
//! `crate::client::actions`), copying them into the VM, evaluating inputs, choosing the node binary at run time, and the handlers themselves.
//!
//! Files: [`manifest`] (loading, the top level, `inputs`, `outputs`), [`runs`] (the kinds of
//! action), [`error`], `steps` (composite steps →
//! [`ActionStep`](crate::protocol::step::ActionStep)s) and `slots` (one YAML value → a template
//! token, checked against the contexts its place allows).

pub mod cache;
pub mod error;
pub mod manifest;
pub mod runs;
mod slots;
mod steps;

pub use error::ManifestError;
pub use manifest::{
    ActionInput, ActionManifest, ActionOutput, MANIFEST_FILE_NAMES, MAX_MANIFEST_BYTES,
};
pub use runs::{
    CompositeRuns, DEFAULT_PRE_POST_IF, DockerImage, DockerRuns, NodeRuns, NodeVersion, Runs,
    SUPPORTED_USING,
};

#[cfg(test)]
mod steps_tests;
#[cfg(test)]
mod tests;
