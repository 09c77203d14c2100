//! Test helper: a [`ReportFactory`] that collects a job's events instead of sending them, and
//! builds the `completejob` parts from them as the real reporter does.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use ghrunner_vm::job::events::JobEvent;
use ghrunner_vm::job::executor::{JobReport, ReportFactory};
use ghrunner_vm::job::lifecycle::BoxError;
use ghrunner_vm::job::report::state::JobIdentity;
use ghrunner_vm::job::report::{ReportOutcome, completion_from_events};
use ghrunner_vm::protocol::job::AgentJobRequestMessage;
use tokio::sync::mpsc;

/// Collects events of every job it reports.
#[derive(Clone, Default)]
pub struct CollectingReports {
    events: Arc<Mutex<Vec<JobEvent>>>,
}

impl ReportFactory for CollectingReports {
    fn start(&self, message: &AgentJobRequestMessage, runner: &str) -> Result<JobReport, BoxError> {
        let identity = JobIdentity {
            job_id: message.job_id,
            job_name: message.job_display_name.clone(),
            worker_name: runner.to_owned(),
        };
        let (tx, mut rx) = mpsc::channel(4096);
        let store = Arc::clone(&self.events);
        let collector = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(event) = rx.recv().await {
                events.push(event);
            }
            events
        });
        let finish = async move {
            let events = collector.await.expect("collector");
            let completion = completion_from_events(&identity, &events);
            let job_result = events.iter().find_map(|e| match e {
                JobEvent::JobCompleted {
                    result, outputs, ..
                } => Some((*result, outputs.clone())),
                _ => None,
            });
            store.lock().unwrap().extend(events);
            ReportOutcome {
                completion,
                job_result,
                failures: Vec::new(),
                console_lines_omitted: 0,
            }
        };
        Ok(JobReport {
            events: tx,
            finish: Box::pin(finish),
        })
    }
}

impl CollectingReports {
    /// Takes the events collected so far (of every finished job).
    pub fn take(&self) -> Vec<JobEvent> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}
