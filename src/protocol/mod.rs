//! Wire types of GitHub's runner protocol. Plain serde structs with no I/O; they accept
//! camelCase and PascalCase keys and ignore unknown fields.

pub mod result;

pub use result::TaskResult;
