//! `ghrunner-vm demo`: one real workflow job, end to end, on this machine.
//!
//! Starts the embedded GHES-compatible service ([`crate::localsvc`]) on 127.0.0.1, registers a
//! runner through the real `register` code path over HTTP, builds the tiny image on first use,
//! compiles the workflow's job with a secret, queues it, serves exactly one job with the real
//! listener and the QEMU executor (`run --once`), then prints what the service received: each
//! step's log and result, the job outputs and the job result.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::GlobalArgs;
use super::image::{ImageBuildArgs, ImageCommand};
use super::register::RegisterArgs;
use super::run::RunArgs;
use crate::exit::ExitStatus;
use crate::image::Image;
use crate::localsvc::{DEFAULT_REGISTRATION_TOKEN, LocalService, LocalServiceConfig};
use crate::vm::qemu::accel::PROBE_CACHE_FILE;
use crate::workflow::WorkflowJob;

/// The demo workflow (examples/hello.yml), embedded so an installed binary can run it.
const HELLO: &str = include_str!("../../examples/hello.yml");
/// The secret the demo job receives (it must appear masked as `***` in the logs).
const DEMO_SECRET: &str = "demo-s3cr3t-value";
/// The label the demo runner is registered with; the workflow's `runs-on` names it.
const DEMO_LABEL: &str = "tiny";

/// Run a real workflow job through an embedded local GitHub service in a fresh QEMU VM.
///
/// Everything happens on 127.0.0.1: registration (RSA key, OAuth), the encrypted session and
/// long poll, the job in a VM from the tiny image (built on first use), timeline and log
/// reporting, completion. Prints the job's logs and result; exits 0 iff the job succeeded.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Workflow file to run [default: the embedded examples/hello.yml].
    #[arg(long, value_name = "FILE")]
    pub workflow: Option<PathBuf>,
    /// Job id in the workflow [default: the first job].
    #[arg(long)]
    pub job: Option<String>,
    /// Where the tiny image is built and kept between runs
    /// [default: the per-user cache dir, e.g. ~/.cache/ghrunner-vm/images/tiny].
    #[arg(long, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
    /// A config.yaml to start from (e.g. `network.allow`, `vm.memory_mib`); the demo points its
    /// release check at the embedded service and writes the result into its runner directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs `demo`.
pub async fn run(args: DemoArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let (yaml, file_name) = match &args.workflow {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read workflow {}", path.display()))?,
            format!(
                ".github/workflows/{}",
                path.file_name()
                    .map_or("ci.yml".into(), |n| n.to_string_lossy())
            ),
        ),
        None => (HELLO.to_owned(), ".github/workflows/hello.yml".to_owned()),
    };
    let image_dir = ensure_tiny_image(args.image_dir, global).await?;

    // A fresh runner directory per demo run: the registration is throw-away.
    let runner_dir = tempfile::Builder::new()
        .prefix("ghrunner-vm-demo-")
        .tempdir()?;
    let demo_global = GlobalArgs {
        dir: Some(runner_dir.path().to_owned()),
        ..global.clone()
    };

    eprintln!("==> starting the embedded GitHub service on 127.0.0.1");
    let service = LocalService::start(LocalServiceConfig::default())
        .await
        .context("cannot start the local service")?;
    let repo_url = service.repo_url("octo-org", "hello");
    eprintln!("    {repo_url}");
    // `runner_version: auto` reads the latest official release from the embedded service (which
    // publishes the baseline), so the demo contacts nothing but 127.0.0.1.
    service.set_latest_runner_release(Some((crate::version::BASELINE, chrono::Utc::now())));
    let base = match &args.config {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            crate::config::Settings::parse(path, &bytes)?
        }
        None => crate::config::Settings::default(),
    };
    let settings = crate::config::Settings {
        runner_releases_url: Some(service.releases_url()),
        ..base
    };
    settings
        .save(runner_dir.path())
        .context("cannot write the demo's config.yaml")?;

    eprintln!("==> registering runner `demo` (labels: self-hosted, Linux, X64, {DEMO_LABEL})");
    let register = RegisterArgs {
        url: Some(repo_url.clone()),
        token: Some(DEFAULT_REGISTRATION_TOKEN.to_owned()),
        jitconfig: None,
        name: Some("demo".to_owned()),
        labels: Vec::new(),
        runner_group: None,
        images: vec![format!("{DEMO_LABEL}={}", image_dir.display())],
        ephemeral: false,
        replace: true,
        unattended: true,
        no_default_labels: false,
        disable_update: true,
        count: 1,
    };
    super::register::run(register, &demo_global)
        .await
        .context("registration failed")?;

    let job_id = queue_job(&service, &yaml, &file_name, args.job.as_deref())?;
    eprintln!("==> job queued; serving one job (`run --once`) in a fresh VM");
    // The KVM probe verdict outlives the throw-away runner directory: it is kept beside the
    // image (`<image dir>/../../accel-probe.json`), so only the first demo on a host probes.
    let kept_verdict = image_dir
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join(PROBE_CACHE_FILE));
    let verdict = runner_dir.path().join(PROBE_CACHE_FILE);
    if let Some(kept) = &kept_verdict {
        let _ = std::fs::copy(kept, &verdict);
    }
    let status = super::run::run(
        RunArgs {
            once: true,
            metrics_addr: None,
        },
        &demo_global,
    )
    .await?;
    if let Some(kept) = &kept_verdict {
        let _ = std::fs::copy(&verdict, kept);
    }
    if status != ExitStatus::Success {
        anyhow::bail!("the runner stopped with {status:?}");
    }
    let succeeded = print_report(&service, &job_id);
    service.shutdown().await;
    Ok(if succeeded {
        ExitStatus::Success
    } else {
        ExitStatus::Error
    })
}

/// Returns the tiny image directory, building it first if it is missing or broken.
async fn ensure_tiny_image(dir: Option<PathBuf>, global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => dir,
        None => dirs::cache_dir()
            .context("cannot find a per-user cache directory: pass --image-dir")?
            .join("ghrunner-vm/images/tiny"),
    };
    if Image::load(&dir).is_ok() {
        eprintln!("==> using the tiny image in {}", dir.display());
        return Ok(dir);
    }
    eprintln!(
        "==> building the tiny image into {} (first run only)",
        dir.display()
    );
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let build = ImageBuildArgs {
        recipe: "tiny".to_owned(),
        out: Some(dir.clone()),
    };
    super::image::run(ImageCommand::Build(build), global).await?;
    Ok(dir)
}

/// Compiles the workflow's job like GitHub's service would and queues it on the legacy path.
fn queue_job(
    service: &LocalService,
    yaml: &str,
    file_name: &str,
    job: Option<&str>,
) -> anyhow::Result<String> {
    let secrets = vec![("DEMO_TOKEN".to_owned(), DEMO_SECRET.to_owned())];
    let queued = service.queue_workflow_job(&WorkflowJob {
        yaml,
        file_name,
        job,
        workflow_name: "demo",
        secrets: &secrets,
    })?;
    eprintln!(
        "    job `{}` runs-on: {}",
        queued.job,
        queued.runs_on.join(", ")
    );
    Ok(queued.job_id)
}

/// Prints the timeline records with their logs, then the completion; true if it succeeded.
fn print_report(service: &LocalService, job_id: &str) -> bool {
    let store = crate::localsvc::reporting::store(&service.state());
    let mut records: Vec<(&String, &Value)> = store.records.iter().collect();
    records.sort_by_key(|(_, r)| r.get("order").and_then(Value::as_i64).unwrap_or(0));
    for (id, record) in records {
        let name = record.get("name").and_then(Value::as_str).unwrap_or("?");
        let result = record.get("result").and_then(Value::as_str).unwrap_or("-");
        println!("\n─── {name} [{result}]");
        for line in store.record_log(id).unwrap_or_default().lines() {
            // Drop the "<timestamp> " prefix each uploaded line carries.
            println!("  {}", line.split_once(' ').map_or(line, |(_, text)| text));
        }
    }
    let proto = crate::localsvc::protocol::protocol_state(&service.state());
    let completion = proto
        .job(job_id)
        .and_then(|j| j.completion)
        .unwrap_or(Value::Null);
    let result = completion
        .get("result")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    println!(
        "\n═══ job outputs: {}",
        completion.get("outputs").unwrap_or(&Value::Null)
    );
    println!("═══ job result: {result}");
    result.eq_ignore_ascii_case("succeeded")
}
