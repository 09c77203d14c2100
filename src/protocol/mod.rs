//! Wire types of GitHub's runner protocol. Plain serde structs with no I/O; they accept
//! camelCase and PascalCase keys and ignore unknown fields.

pub mod context_data;
pub mod job;
pub mod lifecycle;
pub mod message;
pub mod result;
pub mod session;
pub mod step;
pub mod template_token;
pub mod wire;

pub use context_data::PipelineContextData;
pub use job::AgentJobRequestMessage;
pub use result::TaskResult;
pub use template_token::{TemplateToken, TokenKind};
