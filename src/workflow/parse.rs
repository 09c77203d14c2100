//! The workflow's shape: the parsed YAML root must be a mapping with a `jobs` mapping (scalar,
//! unique keys); a job is looked up by its key and must be a mapping without the keys this
//! library does not support; `runs-on` gives its labels. Every error names the file and the
//! node's line and column.

use crate::job::template::SourceLocation;

use super::WorkflowError;
use super::yaml::{self, Node, YamlError};

/// Job keys this library refuses (matrices, containers, services, reusable workflows).
const UNSUPPORTED_JOB_KEYS: [&str; 4] = ["strategy", "container", "services", "uses"];

/// The job ids of a workflow, in document order.
pub fn job_ids(yaml: &str, file_name: &str) -> Result<Vec<String>, WorkflowError> {
    let root = parse_root(yaml, file_name)?;
    let jobs = jobs_node(&root, file_name)?;
    Ok(mapping_pairs(jobs, file_name, "jobs")?
        .iter()
        .filter_map(|(k, _)| k.as_scalar().map(str::to_owned))
        .collect())
}

/// Parses the workflow text; the root must be a mapping.
pub(super) fn parse_root(yaml: &str, file: &str) -> Result<Node, WorkflowError> {
    let root = yaml::parse(yaml).map_err(|e| match e {
        YamlError::Syntax { mark, message } => WorkflowError::Yaml {
            location: location(file, mark),
            message,
        },
        YamlError::Empty => WorkflowError::in_file(file, "the workflow is empty"),
        YamlError::Structure { mark, message } => WorkflowError::Yaml {
            location: location(file, mark),
            message: message.into(),
        },
    })?;
    if !matches!(root, Node::Mapping { .. }) {
        return Err(invalid(&root, file, "a workflow must be a mapping".into()));
    }
    Ok(root)
}

/// The root's `jobs` mapping.
pub(super) fn jobs_node<'a>(root: &'a Node, file: &str) -> Result<&'a Node, WorkflowError> {
    let jobs = root
        .get("jobs")
        .ok_or_else(|| invalid(root, file, "the workflow has no `jobs`".into()))?;
    mapping_pairs(jobs, file, "jobs")?;
    Ok(jobs)
}

/// The job `name` of `jobs`: it must exist, be a mapping and use no unsupported key.
pub(super) fn job_node<'a>(
    jobs: &'a Node,
    name: &str,
    file: &str,
) -> Result<&'a Node, WorkflowError> {
    let job = jobs.get(name).ok_or_else(|| WorkflowError::NoSuchJob {
        job: name.to_owned(),
        available: mapping_pairs(jobs, file, "jobs")
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|(k, _)| k.as_scalar().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })?;
    if !matches!(job, Node::Mapping { .. }) {
        return Err(invalid(
            job,
            file,
            format!("job `{name}` must be a mapping"),
        ));
    }
    for unsupported in UNSUPPORTED_JOB_KEYS {
        if let Some(node) = job.get(unsupported) {
            return Err(invalid(
                node,
                file,
                format!("`{unsupported}` is not supported by the local service"),
            ));
        }
    }
    Ok(job)
}

/// The pairs of a mapping whose keys are scalars, each defined once.
pub(super) fn mapping_pairs<'a>(
    node: &'a Node,
    file: &str,
    what: &str,
) -> Result<&'a [(Node, Node)], WorkflowError> {
    match node {
        Node::Mapping { pairs, .. } => {
            for (i, (key, _)) in pairs.iter().enumerate() {
                let Some(name) = key.as_scalar() else {
                    return Err(invalid(key, file, format!("`{what}` keys must be scalars")));
                };
                if pairs[..i].iter().any(|(k, _)| k.as_scalar() == Some(name)) {
                    return Err(invalid(key, file, format!("`{name}` is already defined")));
                }
            }
            Ok(pairs)
        }
        other => Err(invalid(other, file, format!("`{what}` must be a mapping"))),
    }
}

/// A position in `file`.
pub(super) fn location(file: &str, mark: yaml::Mark) -> SourceLocation {
    SourceLocation {
        file: Some(file.to_owned()),
        line: Some(mark.line as i32),
        col: Some(mark.col as i32),
    }
}

/// An [`WorkflowError::Invalid`] at `node`.
pub(super) fn invalid(node: &Node, file: &str, message: String) -> WorkflowError {
    WorkflowError::Invalid {
        location: location(file, node.mark()),
        message,
    }
}

/// The job's `runs-on` labels, in order (a label, a list, or a mapping with `labels`).
pub(super) fn runs_on(job: &Node, file: &str) -> Result<Vec<String>, WorkflowError> {
    let node = job
        .get("runs-on")
        .ok_or_else(|| invalid(job, file, "the job has no `runs-on`".into()))?;
    let labels: Vec<String> = match node {
        Node::Scalar { text, .. } => vec![text.clone()],
        Node::Sequence { items, .. } => items
            .iter()
            .map(|i| {
                i.as_scalar()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(i, file, "`runs-on` labels must be strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Node::Mapping { .. } => match node.get("labels") {
            Some(Node::Scalar { text, .. }) => vec![text.clone()],
            Some(Node::Sequence { items, .. }) => items
                .iter()
                .filter_map(|i| i.as_scalar().map(str::to_owned))
                .collect(),
            _ => return Err(invalid(node, file, "`runs-on` needs `labels`".into())),
        },
    };
    if let Some(label) = labels.iter().find(|l| l.contains("${{")) {
        return Err(invalid(
            node,
            file,
            format!("`runs-on` expressions are not supported by the local service: {label}"),
        ));
    }
    Ok(labels)
}
