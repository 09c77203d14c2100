//! Huge output: floods arrive complete, the live view says what it left out, and a stuck
//! service does not hold up the runtime.

use super::*;

/// 100,000 lines then one 1 MiB line in one step.
fn flood() -> Vec<JobEvent> {
    let mut events = vec![
        JobEvent::JobStarted { at: at(0) },
        JobEvent::StepStarted {
            step_id: S1,
            number: 1,
            name: "Flood".into(),
            at: at(1),
        },
    ];
    events.extend((0..100_000).map(|i| log(S1, &format!("line {i:06}"))));
    events.push(log(S1, &"x".repeat(1024 * 1024)));
    events.push(JobEvent::StepCompleted {
        step_id: S1,
        result: TaskResult::Succeeded,
        at: at(2),
    });
    events.push(JobEvent::JobCompleted {
        result: TaskResult::Succeeded,
        outputs: vec![],
        at: at(3),
    });
    events
}

fn check_flood_log(lines: &[String]) {
    assert_eq!(lines.len(), 100_001);
    for i in [0usize, 1, 4_095, 50_000, 99_999] {
        assert_eq!(lines[i], format!("line {i:06}"));
    }
    assert_eq!(lines[100_000].len(), 1024 * 1024);
    assert!(lines[100_000].bytes().all(|b| b == b'x'));
}

#[tokio::test]
async fn legacy_flood_arrives_complete_and_the_live_view_marks_what_it_left_out() {
    let service = Service::start().await;
    let reporter = Reporter::legacy(service.target(), http(), options());
    let outcome = run(reporter, flood()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);

    let store = service.store();
    check_flood_log(&strip_timestamps(&store.record_log(&id(S1)).unwrap()));

    let console = store.console_lines(&id(S1));
    let marker = regex::Regex::new(r"^\.\.\. \((\d+) lines omitted\)$").unwrap();
    let omitted: u64 = console
        .iter()
        .filter_map(|l| marker.captures(l))
        .map(|c| c[1].parse::<u64>().unwrap())
        .sum();
    let shown = console.iter().filter(|l| !marker.is_match(l)).count() as u64;
    assert_eq!(
        shown + omitted,
        100_001,
        "every line is shown or counted as omitted"
    );
    assert_eq!(omitted, outcome.console_lines_omitted);
    assert!(console.iter().all(|l| l.chars().count() <= 1027));
    if let Some(big) = console.iter().find(|l| l.starts_with("xxx")) {
        assert_eq!(big, &format!("{}...", "x".repeat(1024)));
    }
    assert!(store.feed.iter().all(|m| m.lines.len() <= 100));
}

#[tokio::test]
async fn results_flood_arrives_in_sealed_blocks_with_the_full_line_count() {
    let service = Service::start().await;
    let reporter = Reporter::results(service.target(), http(), options()).unwrap();
    let outcome = run(reporter, flood()).await;
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let store = service.store();
    let blob = store.results_log(&id(JOB), &id(S1)).unwrap();
    assert!(blob.sealed);
    check_flood_log(&strip_timestamps(&String::from_utf8_lossy(&blob.content)));
    assert_eq!(
        store.metadata[&format!("logs/{JOB}/{S1}")]["line_count"],
        100_001
    );
}

#[tokio::test]
async fn the_runtime_is_not_held_up_by_a_stuck_service() {
    let gate: Arc<tokio::sync::RwLock<()>> = Arc::default();
    let blocked = Arc::clone(&gate).write_owned().await;
    let service = Service::gated(gate).await;
    let reporter = Reporter::legacy(service.target(), http(), options());
    let sender = reporter.events();
    let send_all = async {
        for event in flood() {
            sender.send(event).await.expect("reporter stopped early");
        }
    };
    tokio::time::timeout(SCENARIO_LIMIT, send_all)
        .await
        .expect("sending blocked on a stuck service");
    drop(sender);
    drop(blocked);
    let outcome = tokio::time::timeout(SCENARIO_LIMIT, reporter.finish())
        .await
        .expect("finish stalled");
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    check_flood_log(&strip_timestamps(
        &service.store().record_log(&id(S1)).unwrap(),
    ));
}
