//! Wire types of GitHub's runner protocol. Plain serde structs with no I/O; they accept
//! camelCase and PascalCase keys and ignore unknown fields.

pub mod actions;
pub mod completion;
pub mod context_data;
pub mod job;
pub mod lenient;
pub mod lifecycle;
pub mod message;
pub mod oauth;
pub mod registration;
pub mod result;
pub mod results;
pub mod secret;
pub mod session;
pub mod step;
pub mod template_token;
pub mod timeline;
pub mod vss;
pub mod wire;

pub use context_data::PipelineContextData;
pub use job::AgentJobRequestMessage;
pub use result::TaskResult;
pub use secret::Secret;
pub use template_token::{TemplateToken, TokenKind};
