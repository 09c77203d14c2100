//! Operational metrics of a `run` process and their Prometheus text exposition (format 0.0.4),
//! served on `--metrics-addr` by [`serve`].
//!
//! Owns: job counters by outcome, the VM boot-time histogram, poll errors, the active-VM
//! gauge and the advertised runner version. Counters are lock-free atomics; rendering is pure
//! ([`Metrics::render`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::TaskResult;

/// Upper bounds (seconds) of the VM boot-time histogram buckets.
pub const BOOT_BUCKETS_SECS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// All metrics of one process (share it as `Arc<Metrics>`).
#[derive(Debug, Default)]
pub struct Metrics {
    jobs_started: AtomicU64,
    jobs_succeeded: AtomicU64,
    jobs_failed: AtomicU64,
    jobs_cancelled: AtomicU64,
    poll_errors: AtomicU64,
    active_vms: AtomicU64,
    boot_buckets: [AtomicU64; BOOT_BUCKETS_SECS.len()],
    boot_count: AtomicU64,
    /// Sum of boot times in microseconds.
    boot_sum_micros: AtomicU64,
    /// The version policy whose advertised version is exposed.
    versions: std::sync::OnceLock<Arc<crate::version::VersionPolicy>>,
}

/// Decrements the active-VM gauge when dropped.
#[derive(Debug)]
pub struct ActiveVm {
    metrics: Arc<Metrics>,
}

impl Drop for ActiveVm {
    fn drop(&mut self) {
        self.metrics.active_vms.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A job was taken.
    pub fn job_started(&self) {
        self.jobs_started.fetch_add(1, Ordering::Relaxed);
    }

    /// A job ended with `result`.
    pub fn job_finished(&self, result: TaskResult) {
        let counter = match result {
            TaskResult::Succeeded | TaskResult::SucceededWithIssues | TaskResult::Skipped => {
                &self.jobs_succeeded
            }
            TaskResult::Canceled => &self.jobs_cancelled,
            TaskResult::Failed | TaskResult::Abandoned => &self.jobs_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Exposes the version `versions` advertises (`ghrunner_vm_runner_version_info`).
    pub fn watch_runner_version(&self, versions: Arc<crate::version::VersionPolicy>) {
        let _ = self.versions.set(versions);
    }

    /// A long poll (or session call) failed.
    pub fn poll_error(&self) {
        self.poll_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A VM booted in `took`.
    pub fn vm_booted(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in BOOT_BUCKETS_SECS.iter().zip(&self.boot_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.boot_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.boot_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A VM is running until the returned guard is dropped.
    pub fn vm_active(self: &Arc<Self>) -> ActiveVm {
        self.active_vms.fetch_add(1, Ordering::Relaxed);
        ActiveVm {
            metrics: Arc::clone(self),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "ghrunner_vm_jobs_started_total",
            "Jobs taken by this process.",
            get(&self.jobs_started),
        );
        counter(
            "ghrunner_vm_jobs_succeeded_total",
            "Jobs that ended succeeded.",
            get(&self.jobs_succeeded),
        );
        counter(
            "ghrunner_vm_jobs_failed_total",
            "Jobs that ended failed or abandoned.",
            get(&self.jobs_failed),
        );
        counter(
            "ghrunner_vm_jobs_cancelled_total",
            "Jobs that ended cancelled.",
            get(&self.jobs_cancelled),
        );
        counter(
            "ghrunner_vm_poll_errors_total",
            "Failed long polls and session calls.",
            get(&self.poll_errors),
        );
        let name = "ghrunner_vm_active_vms";
        let _ = writeln!(
            out,
            "# HELP {name} VMs running now.\n# TYPE {name} gauge\n{name} {}",
            get(&self.active_vms)
        );
        let name = "ghrunner_vm_vm_boot_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from launch to SSH ready.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BOOT_BUCKETS_SECS.iter().zip(&self.boot_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.boot_count);
        let sum = get(&self.boot_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        if let Some(versions) = self.versions.get() {
            let now = versions.current();
            let name = "ghrunner_vm_runner_version_info";
            let _ = writeln!(
                out,
                "# HELP {name} The official runner version advertised, where it came from, and \
                 the newest version whose protocol changes were reviewed.\n# TYPE {name} gauge\n\
                 {name}{{version=\"{}\",source=\"{}\",baseline=\"{}\"}} 1",
                now.version,
                now.source.as_str(),
                crate::version::BASELINE
            );
        }
        out
    }
}

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("cannot listen for metrics on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` and serves `GET /metrics` (and `/`) until the task is dropped or aborted.
/// Returns the bound address (useful with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let handler = move || {
        let metrics = Arc::clone(&metrics);
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
                metrics.render(),
            )
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(handler.clone()))
        .route("/", get(handler));
    let task = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "metrics endpoint failed");
        }
    });
    tracing::info!(addr = %local, "serving metrics");
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauge_and_histogram_render_in_text_format() {
        let metrics = Arc::new(Metrics::default());
        metrics.job_started();
        metrics.job_started();
        metrics.job_finished(TaskResult::Succeeded);
        metrics.job_finished(TaskResult::Failed);
        metrics.poll_error();
        metrics.vm_booted(Duration::from_millis(1500));
        metrics.vm_booted(Duration::from_secs(45));
        let active = metrics.vm_active();
        let text = metrics.render();
        assert!(
            text.contains("ghrunner_vm_jobs_started_total 2\n"),
            "{text}"
        );
        assert!(text.contains("ghrunner_vm_jobs_succeeded_total 1\n"));
        assert!(text.contains("ghrunner_vm_jobs_failed_total 1\n"));
        assert!(text.contains("ghrunner_vm_jobs_cancelled_total 0\n"));
        assert!(text.contains("ghrunner_vm_poll_errors_total 1\n"));
        assert!(text.contains("ghrunner_vm_active_vms 1\n"));
        assert!(
            text.contains("ghrunner_vm_vm_boot_seconds_bucket{le=\"1\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("ghrunner_vm_vm_boot_seconds_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("ghrunner_vm_vm_boot_seconds_bucket{le=\"60\"} 2\n"));
        assert!(text.contains("ghrunner_vm_vm_boot_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("ghrunner_vm_vm_boot_seconds_sum 46.5\n"));
        assert!(text.contains("ghrunner_vm_vm_boot_seconds_count 2\n"));
        drop(active);
        assert!(metrics.render().contains("ghrunner_vm_active_vms 0\n"));
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_exposition() {
        let metrics = Arc::new(Metrics::default());
        metrics.job_started();
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics))
            .await
            .unwrap();
        let response = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert!(response.status().is_success());
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE].clone();
        assert_eq!(content_type.to_str().unwrap(), CONTENT_TYPE);
        let body = response.text().await.unwrap();
        assert!(
            body.contains("ghrunner_vm_jobs_started_total 1\n"),
            "{body}"
        );
        task.abort();
    }
}
