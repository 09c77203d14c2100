//! The reporter's pure state: applies [`JobEvent`]s and hands out what to upload.
//!
//! ```text
//!  JobEvent ──apply──► ReportState ──drain──► Drain { records, chunks, console, summaries }
//!                        │  timeline records (job + one Task per step), dirty queue
//!                        │  one LogStream per record (job-level lines → job record)
//!                        │  bounded ConsoleQueue, summaries, annotations, step results
//! ```
//!
//! `apply` never blocks and never does I/O; the uploader calls `drain` on its own schedule.
//! Lines for a step that is unknown or already completed go to the job's own log, so nothing is
//! lost. Events after `JobCompleted` are counted and ignored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::batch::{ConsoleQueue, FeedBatch, LogChunk, LogStream};
use super::record::{
    Completion, CompletionAnnotation, LogRef, RECORD_TYPE_JOB, RECORD_TYPE_TASK, RecordQueue,
    RecordState, StepResult, TimelineRecord, results_timestamp,
};
use crate::job::events::{Annotation, JobEvent};
use crate::protocol::TaskResult;

/// A step summary waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSummary {
    /// The step.
    pub step_id: Uuid,
    /// Markdown (already masked).
    pub markdown: String,
}

/// What the uploader should send now.
#[derive(Debug, Default)]
pub struct Drain {
    /// Snapshots of every record changed since the last drain (job record first if changed).
    pub records: Vec<TimelineRecord>,
    /// Finished log chunks, in order per record.
    pub chunks: Vec<LogChunk>,
    /// One round of live console messages.
    pub console: Vec<FeedBatch>,
    /// Step summaries.
    pub summaries: Vec<PendingSummary>,
}

impl Drain {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.chunks.is_empty()
            && self.console.is_empty()
            && self.summaries.is_empty()
    }
}

/// Identity of the job being reported.
#[derive(Debug, Clone)]
pub struct JobIdentity {
    /// The job record id (`jobId`).
    pub job_id: Uuid,
    /// Display name of the job record.
    pub job_name: String,
    /// The runner's name (`workerName`).
    pub worker_name: String,
}

/// The reporter's state (see the module doc).
#[derive(Debug)]
pub struct ReportState {
    job_id: Uuid,
    records: Vec<TimelineRecord>,
    index: HashMap<Uuid, usize>,
    dirty: RecordQueue,
    logs: HashMap<Uuid, LogStream>,
    log_order: Vec<Uuid>,
    chunk_limit: usize,
    console: ConsoleQueue,
    summaries: Vec<PendingSummary>,
    annotations: Vec<(Option<Uuid>, Annotation)>,
    job_result: Option<(TaskResult, Vec<(String, String)>)>,
    late_events: u64,
}

impl ReportState {
    /// A fresh state with the job record `pending`; logs are chunked at `chunk_limit` bytes.
    pub fn new(job: &JobIdentity, chunk_limit: usize) -> Self {
        let mut record = TimelineRecord::new(job.job_id, None, RECORD_TYPE_JOB, &job.job_name);
        record.worker_name = Some(job.worker_name.clone());
        let mut state = ReportState {
            job_id: job.job_id,
            records: Vec::new(),
            index: HashMap::new(),
            dirty: RecordQueue::default(),
            logs: HashMap::new(),
            log_order: Vec::new(),
            chunk_limit,
            console: ConsoleQueue::default(),
            summaries: Vec::new(),
            annotations: Vec::new(),
            job_result: None,
            late_events: 0,
        };
        state.insert(record);
        state
    }

    /// The job record id.
    pub fn job_id(&self) -> Uuid {
        self.job_id
    }

    /// Whether `JobCompleted` was applied.
    pub fn is_completed(&self) -> bool {
        self.job_result.is_some()
    }

    /// Events that arrived after `JobCompleted` (ignored).
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Live console lines dropped because the console queue was full (the full log has them).
    pub fn console_dropped(&self) -> u64 {
        self.console.dropped()
    }

    /// The job's result and outputs, once completed.
    pub fn job_result(&self) -> Option<&(TaskResult, Vec<(String, String)>)> {
        self.job_result.as_ref()
    }

    /// Current record by id.
    pub fn record(&self, id: Uuid) -> Option<&TimelineRecord> {
        self.index.get(&id).map(|i| &self.records[*i])
    }

    /// All records: the job record, then steps in start order.
    pub fn records(&self) -> &[TimelineRecord] {
        &self.records
    }

    fn insert(&mut self, record: TimelineRecord) {
        self.dirty.push(record.id);
        self.index.insert(record.id, self.records.len());
        self.records.push(record);
    }

    fn update(&mut self, id: Uuid, change: impl FnOnce(&mut TimelineRecord)) {
        if let Some(i) = self.index.get(&id) {
            change(&mut self.records[*i]);
            self.dirty.push(id);
        }
    }

    fn is_open_step(&self, id: Uuid) -> bool {
        self.record(id)
            .is_some_and(|r| r.record_type == RECORD_TYPE_TASK && r.state != RecordState::Completed)
    }

    /// Applies one event; `now` stamps log lines.
    pub fn apply(&mut self, event: JobEvent, now: DateTime<Utc>) {
        if self.is_completed() {
            self.late_events += 1;
            return;
        }
        match event {
            JobEvent::JobStarted { at } => self.update(self.job_id, |r| {
                r.state = RecordState::InProgress;
                r.start_time = Some(at);
            }),
            JobEvent::StepStarted {
                step_id,
                number,
                name,
                at,
            } => self.start_step(step_id, number, &name, at),
            JobEvent::Log { step_id, line } => self.write_line(step_id, &line, now),
            JobEvent::Annotation {
                step_id,
                annotation,
            } => self.annotate(step_id, annotation),
            JobEvent::StepSummary { step_id, markdown } => {
                self.summaries.push(PendingSummary { step_id, markdown })
            }
            JobEvent::StepCompleted {
                step_id,
                result,
                at,
            } => {
                if self.is_open_step(step_id) {
                    self.finish_record(step_id, result, at);
                } else {
                    tracing::warn!(%step_id, "step completed without an open record");
                }
            }
            JobEvent::JobCompleted {
                result,
                outputs,
                at,
            } => self.complete_job(result, outputs, at),
        }
    }

    fn start_step(&mut self, step_id: Uuid, number: u32, name: &str, at: DateTime<Utc>) {
        if self.index.contains_key(&step_id) {
            tracing::warn!(%step_id, "step started twice");
            return;
        }
        let mut record = TimelineRecord::new(step_id, Some(self.job_id), RECORD_TYPE_TASK, name);
        record.order = Some(number);
        record.state = RecordState::InProgress;
        record.start_time = Some(at);
        self.insert(record);
    }

    fn log_target(&self, step_id: Option<Uuid>) -> Uuid {
        match step_id {
            Some(id) if self.is_open_step(id) => id,
            _ => self.job_id,
        }
    }

    fn write_line(&mut self, step_id: Option<Uuid>, line: &str, now: DateTime<Utc>) {
        let target = self.log_target(step_id);
        let limit = self.chunk_limit;
        let log = self
            .logs
            .entry(target)
            .or_insert_with(|| LogStream::new(target, limit));
        if !self.log_order.contains(&target) {
            self.log_order.push(target);
        }
        let number = log.write(now, line);
        self.console.push(target, number, line);
    }

    fn annotate(&mut self, step_id: Option<Uuid>, annotation: Annotation) {
        let target = self.log_target(step_id);
        let log_line = self
            .logs
            .get(&target)
            .map(|l| l.total_lines())
            .filter(|n| *n > 0);
        let mut kept = false;
        self.update(target, |r| kept = r.add_issue(&annotation, log_line));
        // As many as the record keeps go to `completejob`; the record counts them all.
        if kept {
            self.annotations
                .push((step_id.filter(|id| self.index.contains_key(id)), annotation));
        }
    }

    fn finish_record(&mut self, id: Uuid, result: TaskResult, at: DateTime<Utc>) {
        if let Some(log) = self.logs.get_mut(&id) {
            log.finish();
            self.console.close_step(id, log.total_lines());
        }
        self.update(id, |r| {
            r.state = RecordState::Completed;
            r.result = Some(result);
            r.finish_time = Some(at);
        });
    }

    fn complete_job(
        &mut self,
        result: TaskResult,
        outputs: Vec<(String, String)>,
        at: DateTime<Utc>,
    ) {
        let open: Vec<Uuid> = self
            .records
            .iter()
            .filter(|r| r.record_type == RECORD_TYPE_TASK && r.state != RecordState::Completed)
            .map(|r| r.id)
            .collect();
        for id in open {
            tracing::warn!(step_id = %id, "step still open at job completion");
            self.finish_record(id, TaskResult::Abandoned, at);
        }
        self.finish_record(self.job_id, result, at);
        self.job_result = Some((result, outputs));
    }

    /// Records the log id created for a record (legacy path) and marks the record changed.
    pub fn set_log_ref(&mut self, record_id: Uuid, log_id: i64) {
        self.update(record_id, |r| r.log = Some(LogRef { id: log_id }));
    }

    /// Puts back records whose send failed (their newest state is sent next time).
    pub fn requeue_records(&mut self, ids: &[Uuid]) {
        self.dirty.requeue(ids);
    }

    /// Takes what is ready to send: changed records, finished chunks, one console round,
    /// summaries.
    pub fn drain(&mut self) -> Drain {
        let records = self
            .dirty
            .take()
            .into_iter()
            .filter_map(|id| self.record(id).cloned())
            .collect();
        let mut chunks = Vec::new();
        for id in &self.log_order {
            if let Some(log) = self.logs.get_mut(id) {
                chunks.extend(log.take_ready());
            }
        }
        Drain {
            records,
            chunks,
            console: self.console.drain_round(),
            summaries: std::mem::take(&mut self.summaries),
        }
    }

    /// Whether the job completed and nothing is left to send.
    pub fn is_drained(&self) -> bool {
        self.is_completed()
            && self.dirty.is_empty()
            && self.console.is_empty()
            && self.summaries.is_empty()
            && self.logs.values().all(|l| l.is_finished())
    }

    /// Log bytes held and not yet taken for upload (the back-pressure measure).
    pub fn backlog_bytes(&self) -> usize {
        self.logs.values().map(LogStream::backlog_bytes).sum()
    }

    /// Lines in a record's full log.
    pub fn log_lines(&self, record_id: Uuid) -> u64 {
        self.logs.get(&record_id).map_or(0, |l| l.total_lines())
    }

    /// The `stepResults` and `annotations` of `completejob`.
    pub fn completion(&self) -> Completion {
        let number_of = |id: Uuid| self.record(id).and_then(|r| r.order);
        let annotations: Vec<(Option<Uuid>, CompletionAnnotation)> = self
            .annotations
            .iter()
            .map(|(step, a)| {
                (
                    *step,
                    CompletionAnnotation::from_annotation(a, step.and_then(number_of)),
                )
            })
            .collect();
        let step_results = self
            .records
            .iter()
            .filter(|r| r.record_type == RECORD_TYPE_TASK)
            .map(|r| StepResult {
                external_id: r.id,
                number: r.order.unwrap_or(0),
                name: r.name.clone(),
                status: r.state.as_str().to_owned(),
                conclusion: r.result,
                started_at: r.start_time.map(results_timestamp),
                completed_at: r.finish_time.map(results_timestamp),
                completed_log_lines: self.log_lines(r.id),
                annotations: annotations
                    .iter()
                    .filter(|(step, _)| *step == Some(r.id))
                    .map(|(_, a)| a.clone())
                    .collect(),
            })
            .collect();
        Completion {
            step_results,
            annotations: annotations.into_iter().map(|(_, a)| a).collect(),
        }
    }
}

/// Builds `completejob`'s `stepResults` and `annotations` from a job's collected events.
pub fn completion_from_events<'a>(
    job: &JobIdentity,
    events: impl IntoIterator<Item = &'a JobEvent>,
) -> Completion {
    let mut state = ReportState::new(job, usize::MAX);
    let now = Utc::now();
    for event in events {
        state.apply(event.clone(), now);
    }
    state.completion()
}

#[cfg(test)]
mod tests;
