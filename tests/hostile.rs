//! A job is an attacker. Each attack of issue "Hostile guest" runs as a workflow job through the
//! embedded service, served by a real `ghrunner-vm run` process in a real VM (tiny image, TCG):
//! each job ends with the documented error or truncation, is completed on the server, and the
//! agent's peak resident memory while serving it stays under 100 MiB above its idle size
//! (`VmHWM` from /proc, reset before each job through `clear_refs`). Agent CPU per attack is
//! printed; `examples/bench_hostile.rs` measures the floods' CPU on its own.
//!
//! Needs qemu-system-x86_64, passt and what the tiny recipe needs (tests/install-deps.sh
//! installs them); fails naming what is missing.

mod support;
use support::agent_proc;
use support::cli;

use std::time::Duration;

use agent_proc::{Agent, completion, queue, step, steps};
use ghrunner_vm::localsvc::LocalService;

/// How far above its idle resident size the agent may peak while serving one hostile job.
const PEAK_ABOVE_IDLE_MIB: f64 = 100.0;

fn job(step_name: &str, script: &str) -> String {
    let indented: String = script.lines().map(|l| format!("          {l}\n")).collect();
    format!(
        "on: push\njobs:\n  attack:\n    runs-on: [self-hosted, tiny]\n    steps:\n      \
         - name: {step_name}\n        run: |\n{indented}"
    )
}

/// One attack's outcome: the completion's result and the agent's figures.
struct Served {
    job: String,
    result: String,
    peak_above_idle_mib: f64,
    cpu: Duration,
}

/// Runs one job and checks the agent's memory while it is served.
async fn serve(svc: &LocalService, agent: &Agent, idle_mib: f64, what: &str, yaml: &str) -> Served {
    serve_watching(svc, agent, idle_mib, what, yaml, &mut || {}).await
}

/// [`serve`], calling `watch` every 200 ms until the job is completed on the server.
async fn serve_watching(
    svc: &LocalService,
    agent: &Agent,
    idle_mib: f64,
    what: &str,
    yaml: &str,
    watch: &mut dyn FnMut(),
) -> Served {
    agent.reset_peak();
    let cpu_before = agent.cpu();
    let id = queue(svc, yaml);
    let proto = ghrunner_vm::localsvc::protocol::protocol_state(&svc.state());
    let deadline = std::time::Instant::now() + agent_proc::JOB_LIMIT;
    let done = loop {
        watch();
        if let Some(done) = proto.job(&id).and_then(|r| r.completion) {
            break done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the job was not completed within {:?}\n{}",
            agent_proc::JOB_LIMIT,
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let peak = agent.rss_mib().1;
    let cpu = agent.cpu() - cpu_before;
    let above = peak - idle_mib;
    eprintln!(
        "hostile: {what}: result {}, agent peak RSS {peak:.1} MiB ({above:.1} MiB above idle), agent CPU {:.2} s",
        done["result"],
        cpu.as_secs_f64()
    );
    assert!(
        above < PEAK_ABOVE_IDLE_MIB,
        "{what}: the agent peaked at {peak:.1} MiB, {above:.1} MiB above its idle {idle_mib:.1} \
         MiB (limit {PEAK_ABOVE_IDLE_MIB} MiB)\n{}",
        agent.log()
    );
    Served {
        job: id,
        result: done["result"].as_str().unwrap_or_default().to_owned(),
        peak_above_idle_mib: above,
        cpu,
    }
}

fn assert_step_says(svc: &LocalService, served: &Served, name: &str, text: &str) {
    let steps = steps(svc, &served.job);
    let s = step(&steps, name);
    assert!(
        s.issues.iter().any(|i| i.contains(text)) || s.log.contains(text),
        "step {name:?} does not say {text:?}: issues {:?}, log tail {:?}",
        s.issues,
        &s.log[s.log.len().saturating_sub(2000)..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_ends_with_its_documented_limit_and_a_completed_job() {
    let svc = cli::service(false).await;
    let mut agent = Agent::start(
        &svc,
        std::path::Path::new(env!("CARGO_BIN_EXE_ghrunner-vm")),
        &support::image::tiny_image(),
    )
    .await;

    // Warm up: one ordinary job, so that the idle size includes a served job's code and pools.
    let warm = queue(&svc, &job("Warm up", "echo warm-up-ran-in-$(uname -s)"));
    let done = completion(&svc, &warm).await;
    assert_eq!(done["result"], "succeeded", "{done}\n{}", agent.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = agent.rss_mib().0;
    eprintln!("hostile: agent idle RSS {idle:.1} MiB");
    let mut figures = Vec::new();

    // 1. A sparse 500 MB GITHUB_ENV: sized in the guest, never read; the step fails naming it.
    let served = serve(
        &svc,
        &agent,
        idle,
        "sparse 500 MB GITHUB_ENV",
        &job("Sparse env", "truncate -s 500M \"$GITHUB_ENV\""),
    )
    .await;
    assert_eq!(served.result, "failed");
    assert_step_says(
        &svc,
        &served,
        "Sparse env",
        "$GITHUB_ENV is 524288000 bytes; ghrunner-vm reads at most 1024 KiB of a file command",
    );
    figures.push(("sparse GITHUB_ENV", served));

    // 2. A 400 MB GITHUB_STATE (sparse too: the tiny guest's memory could not hold it).
    let served = serve(
        &svc,
        &agent,
        idle,
        "400 MB GITHUB_STATE",
        &job(
            "Huge state",
            "echo begin > \"$GITHUB_STATE\"; truncate -s 400M \"$GITHUB_STATE\"",
        ),
    )
    .await;
    assert_eq!(served.result, "failed");
    assert_step_says(
        &svc,
        &served,
        "Huge state",
        "$GITHUB_STATE is 419430400 bytes",
    );
    figures.push(("400 MB GITHUB_STATE", served));

    // 3. 150,000 warnings: 10 become annotations (the official cap), every one is counted and
    //    logged, the job succeeds and its report is accepted.
    let served = serve(
        &svc,
        &agent,
        idle,
        "150k ::warning:: lines",
        &job(
            "Warnings",
            "seq 150000 | sed 's/^/::warning::flood /'\necho warnings-done",
        ),
    )
    .await;
    assert_eq!(served.result, "succeeded");
    {
        let steps = steps(&svc, &served.job);
        let s = step(&steps, "Warnings");
        assert_eq!(s.record["warningCount"], 150_000, "{}", s.record);
        let warnings = s.record["issues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "warning")
            .count();
        assert_eq!(warnings, 10, "annotations kept on the record");
        assert!(
            s.log.contains("##[warning]flood 149999"),
            "every one logged"
        );
        assert!(s.log.contains("warnings-done"));
    }
    figures.push(("150k warnings", served));

    // 4. 20,000 values to mask, each followed by a line printing it: every one masked.
    let served = serve(
        &svc,
        &agent,
        idle,
        "20k ::add-mask:: and lines",
        &job(
            "Masks",
            "seq 20000 | awk '{print \"::add-mask::hostile-value-\" $1; print \"line hostile-value-\" $1}'\necho masks-done",
        ),
    )
    .await;
    assert_eq!(served.result, "succeeded");
    {
        let steps = steps(&svc, &served.job);
        let s = step(&steps, "Masks");
        assert!(
            s.log.contains("masks-done"),
            "{}",
            &s.log[..s.log.len().min(2000)]
        );
        assert_eq!(
            s.log.matches("line ***").count(),
            20_000,
            "every line masked"
        );
        assert!(!s.log.contains("hostile-value-"), "a value leaked");
    }
    figures.push(("20k masks", served));

    // 5. A console flood: once the guest is ready its console goes to a 64 KiB ring, so
    //    console.log on the host stops growing.
    let mut largest = 0u64;
    let served = serve_watching(
        &svc,
        &agent,
        idle,
        "console flood",
        &job(
            "Console flood",
            "echo flood-start\ntimeout 15 sh -c 'yes > /dev/ttyS0' || true\necho flood-done",
        ),
        &mut || {
            for dir in agent.vm_dirs() {
                if let Ok(meta) = std::fs::metadata(dir.join("console.log")) {
                    largest = largest.max(meta.len());
                }
            }
        },
    )
    .await;
    eprintln!("hostile: console flood: console.log at most {largest} bytes");
    assert_eq!(served.result, "succeeded");
    assert!(
        largest > 0 && largest < 1024 * 1024,
        "console.log was at most {largest} bytes during the flood (none seen, or it grew)"
    );
    assert_step_says(&svc, &served, "Console flood", "flood-done");
    figures.push(("console flood", served));

    // 6. 100,000 outputs: more than a file command may hold; the step fails naming the limit.
    let served = serve(
        &svc,
        &agent,
        idle,
        "100k outputs",
        &job(
            "Outputs",
            "seq 100000 | sed 's/.*/output_&=value_&/' >> \"$GITHUB_OUTPUT\"",
        ),
    )
    .await;
    assert_eq!(served.result, "failed");
    assert_step_says(&svc, &served, "Outputs", "$GITHUB_OUTPUT is ");
    assert_step_says(
        &svc,
        &served,
        "Outputs",
        "reads at most 1024 KiB of a file command",
    );
    figures.push(("100k outputs", served));

    // 7. 100,000 PATH entries: under the file limit, but PATH would outgrow what Linux passes
    //    to a program; the step fails naming it and PATH stays as it was.
    let served = serve(
        &svc,
        &agent,
        idle,
        "100k PATH lines",
        &format!(
            "{}      - name: After\n        if: always()\n        run: echo \"path-now=$PATH\"\n",
            job("Path", "seq 100000 | sed 's|^|/p/|' >> \"$GITHUB_PATH\"")
        ),
    )
    .await;
    assert_eq!(served.result, "failed");
    assert_step_says(&svc, &served, "Path", "GITHUB_PATH: PATH would be");
    {
        let steps = steps(&svc, &served.job);
        // Nothing of the refused PATH was kept for the next step.
        let after = &step(&steps, "After").log;
        assert!(after.contains("path-now="), "{after}");
        assert!(!after.contains("/p/1"), "{after}");
    }
    figures.push(("100k PATH lines", served));

    eprintln!("hostile: figures (agent peak above idle, agent CPU):");
    for (what, served) in &figures {
        eprintln!(
            "  {what:<22} {:>7.1} MiB  {:>6.2} s",
            served.peak_above_idle_mib,
            served.cpu.as_secs_f64()
        );
    }

    // The agent is still serving: an ordinary job after all that succeeds.
    let after = queue(&svc, &job("After the attacks", "echo still-serving"));
    let done = completion(&svc, &after).await;
    assert_eq!(done["result"], "succeeded", "{done}");
    agent.child.kill().await.unwrap();
}
