//! `TaskResult`: the result of a job or a step (`src/Sdk/DTWebApi/WebApi/TaskResult.cs`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Result of a job or step. Written as camelCase strings; read from strings in any casing or
/// from the integer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskResult {
    /// 0
    Succeeded,
    /// 1
    SucceededWithIssues,
    /// 2
    Failed,
    /// 3
    Canceled,
    /// 4
    Skipped,
    /// 5
    Abandoned,
}

impl TaskResult {
    /// The wire name (`succeeded`, `succeededWithIssues`, `failed`, `canceled`, `skipped`,
    /// `abandoned`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskResult::Succeeded => "succeeded",
            TaskResult::SucceededWithIssues => "succeededWithIssues",
            TaskResult::Failed => "failed",
            TaskResult::Canceled => "canceled",
            TaskResult::Skipped => "skipped",
            TaskResult::Abandoned => "abandoned",
        }
    }

    /// The integer code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The `steps.<id>.outcome` / `job.status` word: `success`, `failure`, `cancelled`, `skipped`.
    pub fn context_word(self) -> &'static str {
        match self {
            TaskResult::Succeeded | TaskResult::SucceededWithIssues => "success",
            TaskResult::Failed | TaskResult::Abandoned => "failure",
            TaskResult::Canceled => "cancelled",
            TaskResult::Skipped => "skipped",
        }
    }

    /// Merges two results: the worse wins (official `TaskResultUtil.MergeTaskResults`).
    pub fn merge(self, other: TaskResult) -> TaskResult {
        // Canceled, Skipped and Abandoned stick; otherwise the larger code is worse.
        if matches!(
            self,
            TaskResult::Canceled | TaskResult::Skipped | TaskResult::Abandoned
        ) {
            return self;
        }
        if self.code() >= other.code() {
            self
        } else {
            other
        }
    }

    fn from_code(code: i64) -> Option<TaskResult> {
        Some(match code {
            0 => TaskResult::Succeeded,
            1 => TaskResult::SucceededWithIssues,
            2 => TaskResult::Failed,
            3 => TaskResult::Canceled,
            4 => TaskResult::Skipped,
            5 => TaskResult::Abandoned,
            _ => return None,
        })
    }

    fn from_name(name: &str) -> Option<TaskResult> {
        let all = [
            TaskResult::Succeeded,
            TaskResult::SucceededWithIssues,
            TaskResult::Failed,
            TaskResult::Canceled,
            TaskResult::Skipped,
            TaskResult::Abandoned,
        ];
        all.into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(name))
    }
}

impl Serialize for TaskResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskResult {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(deserializer)?;
        let parsed = match &raw {
            serde_json::Value::String(s) => TaskResult::from_name(s),
            serde_json::Value::Number(n) => n.as_i64().and_then(TaskResult::from_code),
            _ => None,
        };
        parsed.ok_or_else(|| serde::de::Error::custom(format!("invalid task result {raw}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_in_any_casing_and_codes() {
        let parsed: Vec<TaskResult> =
            serde_json::from_str(r#"["Succeeded", "failed", 3, "SUCCEEDEDWITHISSUES"]"#).unwrap();
        assert_eq!(
            parsed,
            [
                TaskResult::Succeeded,
                TaskResult::Failed,
                TaskResult::Canceled,
                TaskResult::SucceededWithIssues
            ]
        );
        assert!(serde_json::from_str::<TaskResult>("9").is_err());
    }

    #[test]
    fn writes_camel_case() {
        let json = serde_json::to_string(&TaskResult::SucceededWithIssues).unwrap();
        assert_eq!(json, r#""succeededWithIssues""#);
    }

    #[test]
    fn merge_keeps_the_worse_result() {
        assert_eq!(
            TaskResult::Succeeded.merge(TaskResult::Failed),
            TaskResult::Failed
        );
        assert_eq!(
            TaskResult::Failed.merge(TaskResult::Succeeded),
            TaskResult::Failed
        );
        assert_eq!(
            TaskResult::Canceled.merge(TaskResult::Failed),
            TaskResult::Canceled
        );
    }
}
