use super::*;
use crate::job::events::AnnotationLevel;

fn job() -> JobIdentity {
    JobIdentity {
        job_id: Uuid::from_u128(100),
        job_name: "build".into(),
        worker_name: "runner-1".into(),
    }
}

fn at(sec: u32) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-07-01T12:00:{sec:02}.5Z"))
        .unwrap()
        .with_timezone(&Utc)
}

const S1: Uuid = Uuid::from_u128(1);
const S2: Uuid = Uuid::from_u128(2);

fn log(step: Option<Uuid>, line: &str) -> JobEvent {
    JobEvent::Log {
        step_id: step,
        line: line.into(),
    }
}

fn script() -> Vec<JobEvent> {
    vec![
        JobEvent::JobStarted { at: at(0) },
        log(None, "set up"),
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "Checkout".into(),
            at: at(1),
        },
        log(Some(S1), "one"),
        log(Some(S1), "two"),
        JobEvent::Annotation {
            step_id: Some(S1),
            annotation: Annotation {
                level: AnnotationLevel::Error,
                message: "bad".into(),
                title: None,
                file: Some("a.c".into()),
                line: Some(3),
                end_line: None,
                col: None,
                end_col: None,
            },
        },
        JobEvent::StepCompleted {
            step_id: S1,
            result: TaskResult::Failed,
            at: at(2),
        },
        JobEvent::StepStarted {
            step_id: S2,
            number: 2,
            name: "Test".into(),
            at: at(3),
        },
        JobEvent::StepSummary {
            step_id: S2,
            markdown: "# hi".into(),
        },
        JobEvent::StepCompleted {
            step_id: S2,
            result: TaskResult::Skipped,
            at: at(4),
        },
        log(Some(S1), "late line of a finished step"),
        JobEvent::JobCompleted {
            result: TaskResult::Failed,
            outputs: vec![],
            at: at(5),
        },
    ]
}

fn run(events: Vec<JobEvent>) -> (ReportState, Vec<Drain>) {
    let mut state = ReportState::new(&job(), 1 << 20);
    let mut drains = Vec::new();
    for event in events {
        state.apply(event, at(9));
        drains.push(state.drain());
    }
    (state, drains)
}

#[test]
fn records_follow_the_job_and_steps() {
    let (state, drains) = run(script());
    let record = state.record(job().job_id).unwrap();
    assert_eq!(
        (record.state, record.result),
        (RecordState::Completed, Some(TaskResult::Failed))
    );
    assert_eq!(record.start_time, Some(at(0)));
    assert_eq!(record.worker_name.as_deref(), Some("runner-1"));
    let s1 = state.record(S1).unwrap();
    assert_eq!(s1.parent_id, Some(job().job_id));
    assert_eq!((s1.order, s1.error_count), (Some(1), 1));
    assert_eq!(s1.issues[0].data["logFileLineNumber"], "2");
    assert_eq!(s1.finish_time, Some(at(2)));
    let first: Vec<Uuid> = drains[0].records.iter().map(|r| r.id).collect();
    assert_eq!(first, vec![job().job_id]);
    assert!(state.is_drained());
}

#[test]
fn lines_go_to_their_step_log_and_leftovers_to_the_job_log() {
    let (state, drains) = run(script());
    let chunks: Vec<&LogChunk> = drains.iter().flat_map(|d| d.chunks.iter()).collect();
    let s1 = chunks.iter().find(|c| c.record_id == S1).unwrap();
    let text = String::from_utf8(s1.data.clone()).unwrap();
    assert_eq!(
        text,
        "2026-07-01T12:00:09.5000000Z one\n2026-07-01T12:00:09.5000000Z two\n"
    );
    assert!(s1.last);
    let job_chunk = chunks.iter().find(|c| c.record_id == job().job_id).unwrap();
    let job_text = String::from_utf8(job_chunk.data.clone()).unwrap();
    assert!(job_text.contains(" set up\n") && job_text.contains(" late line of a finished step\n"));
    assert_eq!(state.log_lines(S2), 0);
    assert!(!chunks.iter().any(|c| c.record_id == S2));
}

#[test]
fn summaries_and_console_lines_are_drained() {
    let (_, drains) = run(script());
    let summaries: Vec<&PendingSummary> = drains.iter().flat_map(|d| d.summaries.iter()).collect();
    assert_eq!(
        summaries,
        vec![&PendingSummary {
            step_id: S2,
            markdown: "# hi".into()
        }]
    );
    let console: Vec<&FeedBatch> = drains.iter().flat_map(|d| d.console.iter()).collect();
    let s1: Vec<&str> = console
        .iter()
        .filter(|b| b.step_id == S1)
        .flat_map(|b| b.lines.iter().map(String::as_str))
        .collect();
    assert_eq!(s1, vec!["one", "two"]);
}

#[test]
fn completion_has_snake_case_step_results_and_annotations() {
    let (state, _) = run(script());
    let completion = state.completion();
    let json = serde_json::to_value(&completion).unwrap();
    let first = &json["stepResults"][0];
    assert_eq!(first["external_id"], S1.to_string());
    assert_eq!(first["status"], "completed");
    assert_eq!(first["conclusion"], "failed");
    assert_eq!(first["started_at"], "2026-07-01T12:00:01.500Z");
    assert_eq!(first["completed_log_lines"], 2);
    assert_eq!(first["annotations"][0]["level"], "failure");
    assert_eq!(json["stepResults"][1]["conclusion"], "skipped");
    assert!(json["stepResults"][1].get("annotations").is_none());
    assert_eq!(json["annotations"][0]["stepNumber"], 1);
    assert_eq!(completion_from_events(&job(), &script()), completion);
}

#[test]
fn open_steps_are_abandoned_and_late_events_counted() {
    let events = vec![
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "x".into(),
            at: at(1),
        },
        JobEvent::JobCompleted {
            result: TaskResult::Canceled,
            outputs: vec![],
            at: at(2),
        },
        log(Some(S1), "after the end"),
    ];
    let (state, _) = run(events);
    assert_eq!(
        state.record(S1).unwrap().result,
        Some(TaskResult::Abandoned)
    );
    assert_eq!(state.late_events(), 1);
}

#[test]
fn failed_record_send_is_requeued_with_newest_state() {
    let mut state = ReportState::new(&job(), 1 << 20);
    state.apply(
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "x".into(),
            at: at(1),
        },
        at(1),
    );
    let sent: Vec<Uuid> = state.drain().records.iter().map(|r| r.id).collect();
    state.set_log_ref(S1, 42);
    state.requeue_records(&sent);
    let again = state.drain().records;
    assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), sent);
    assert_eq!(again[1].log, Some(LogRef { id: 42 }));
}
