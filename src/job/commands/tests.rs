//! Tests of workflow-command parsing and the per-step processor. Cases follow the official
//! runner's `ActionCommandL0` / `ActionCommandManagerL0` scenarios, written independently.

use super::*;
use crate::job::events::Annotation;
use CommandEffect::{AddMask, AddPath, Debug, Fail, Log, SetEnv, SetOutput};

fn any(_: &str) -> bool {
    true
}

fn processor() -> CommandProcessor {
    CommandProcessor::new(CommandConfig {
        enhanced_annotations: true,
        workspace: Some("/work/repo/repo".into()),
        ..CommandConfig::default()
    })
}

fn logged(effects: &[CommandEffect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Log(l) => Some(l.as_str()),
            _ => None,
        })
        .collect()
}

fn annotations(effects: &[CommandEffect]) -> Vec<&Annotation> {
    effects
        .iter()
        .filter_map(|e| match e {
            CommandEffect::Annotation(a) => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn v2_parses_name_properties_and_data() {
    let c = parse_v2("  ::warning file=a.rs,line=3, title = x ::some data", any).unwrap();
    assert_eq!(c.name, "warning");
    assert_eq!(c.property("FILE"), Some("a.rs"));
    assert_eq!(c.property("line"), Some("3"));
    // Keys are not trimmed: " title " is its own key.
    assert_eq!(c.property("title"), None);
    assert_eq!(c.property(" title "), Some(" x"));
    assert_eq!(c.data, "some data");
}

#[test]
fn v2_needs_leading_marker_and_separator() {
    assert!(parse_v2("x ::error::m", any).is_none());
    assert!(parse_v2("::error", any).is_none());
    assert!(parse_v2("::::data", any).is_none());
    assert_eq!(parse_v2("\t::error::", any).unwrap().data, "");
}

#[test]
fn v2_drops_valueless_properties() {
    let c = parse_v2("::set-output name=,=v,k=v,flag::d", any).unwrap();
    assert_eq!(c.properties, vec![("k".into(), "v".into())]);
}

#[test]
fn v2_unescapes_data_and_properties_differently() {
    let c = parse_v2("::error title=a%3Ab%2Cc%0Ad%25253A::x%0D%0Ay%25%3A%2C", any).unwrap();
    assert_eq!(c.property("title"), Some("a:b,c\nd%253A"));
    assert_eq!(c.data, "x\r\ny%%3A%2C");
}

#[test]
fn legacy_parses_anywhere_in_the_line() {
    let c = parse_legacy("prefix ##[set-output name=a;k=b%3Bc%5D]v%3B%5D%0A", any).unwrap();
    assert_eq!(c.name, "set-output");
    assert_eq!(c.property("name"), Some("a"));
    assert_eq!(c.property("k"), Some("b;c]"));
    assert_eq!(c.data, "v;]\n");
    assert!(parse_legacy("##[error no close", any).is_none());
}

#[test]
fn names_are_case_insensitive_and_unknown_names_are_plain_text() {
    let mut p = processor();
    let effects = p.process_line("::SET-OUTPUT name=x::1");
    assert_eq!(
        effects,
        [SetOutput {
            name: "x".into(),
            value: "1".into()
        }]
    );
    assert_eq!(p.process_line("::nope::x"), [Log("::nope::x".into())]);
    assert_eq!(p.process_line("a::b"), [Log("a::b".into())]);
    assert_eq!(p.process_line("plain"), [Log("plain".into())]);
}

#[test]
fn handled_commands_are_not_logged_unless_echo_is_on() {
    let mut p = processor();
    assert!(logged(&p.process_line("::save-state name=s::v")).is_empty());
    let effects = p.process_line("::echo::on");
    assert!(logged(&effects).is_empty());
    assert_eq!(
        logged(&p.process_line("::save-state name=s::v")),
        ["::save-state name=s::v"]
    );
    // debug and annotations never echo; add-mask echoes masked.
    assert!(logged(&p.process_line("::debug::d")).is_empty());
    assert_eq!(
        logged(&p.process_line("::warning::w")),
        Vec::<&str>::new(),
        "the annotation's own ##[warning] line is written by the runtime"
    );
    let effects = p.process_line("::add-mask::s3cret");
    assert_eq!(
        effects,
        [AddMask("s3cret".into()), Log("::add-mask::***".into())]
    );
    p.process_line("::echo::OFF");
    assert!(logged(&p.process_line("::save-state name=s::v")).is_empty());
}

#[test]
fn step_debug_starts_with_echo_on() {
    let mut p = CommandProcessor::new(CommandConfig {
        step_debug: true,
        ..CommandConfig::default()
    });
    assert_eq!(
        logged(&p.process_line("::group::G")),
        ["::group::G", "##[group]G"]
    );
}

#[test]
fn invalid_echo_value_fails_the_step() {
    let mut p = processor();
    let effects = p.process_line("::echo::loud");
    assert_eq!(effects.last(), Some(&Fail));
    let messages: Vec<_> = annotations(&effects).iter().map(|a| &a.message).collect();
    assert_eq!(
        messages[0],
        "Unable to process command '::echo::loud' successfully."
    );
    assert!(messages[1].contains("Invalid echo command value"));
}

#[test]
fn add_mask_blank_warns() {
    let mut p = processor();
    let effects = p.process_line("::add-mask::   ");
    let a = annotations(&effects);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].level, AnnotationLevel::Warning);
    assert!(!effects.iter().any(|e| matches!(e, AddMask(_) | Fail)));
}

#[test]
fn group_markers() {
    let mut p = processor();
    assert_eq!(
        p.process_line("::group::Build"),
        [Log("##[group]Build".into())]
    );
    assert_eq!(p.process_line("::endgroup::"), [Log("##[endgroup]".into())]);
}

#[test]
fn set_output_without_name_fails() {
    let mut p = processor();
    let effects = p.process_line("::set-output::v");
    assert_eq!(effects.last(), Some(&Fail));
    assert!(
        annotations(&effects)[1]
            .message
            .contains("Required field 'name' is missing in ##[set-output] command.")
    );
}

#[test]
fn set_env_and_add_path_are_disabled_by_default() {
    let mut p = processor();
    for line in ["::set-env name=A::b", "::add-path::/opt/bin"] {
        let effects = p.process_line(line);
        assert_eq!(effects.last(), Some(&Fail), "{line}");
        let a = annotations(&effects);
        assert_eq!(
            a[0].message,
            format!("Unable to process command '{line}' successfully.")
        );
        assert!(
            a[1].message.contains("command is disabled"),
            "{}",
            a[1].message
        );
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, SetEnv { .. } | AddPath(_)))
        );
    }
}

#[test]
fn set_env_and_add_path_work_when_allowed() {
    let mut p = CommandProcessor::new(CommandConfig {
        allow_unsecure_commands: true,
        ..CommandConfig::default()
    });
    assert_eq!(
        p.process_line("::set-env name=A::b"),
        [SetEnv {
            name: "A".into(),
            value: "b".into()
        }]
    );
    assert_eq!(
        p.process_line("::add-path::/opt/bin"),
        [AddPath("/opt/bin".into())]
    );
    let blocked = p.process_line("::set-env name=node_options::--x");
    assert_eq!(annotations(&blocked).len(), 1);
    assert!(!blocked.contains(&Fail));
}

#[test]
fn stop_commands_until_token() {
    let mut p = processor();
    let effects = p.process_line("::stop-commands::abc123xyz");
    assert_eq!(effects[0], AddMask("abc123xyz".into()));
    assert_eq!(logged(&effects), ["::stop-commands::abc123xyz"]);
    assert!(p.is_stopped());
    assert_eq!(
        p.process_line("::set-output name=a::b"),
        [Log("::set-output name=a::b".into())]
    );
    assert_eq!(p.process_line("::error::x"), [Log("::error::x".into())]);
    let resumed = p.process_line("::ABC123XYZ::");
    assert_eq!(logged(&resumed), ["::ABC123XYZ::"]);
    assert!(!p.is_stopped());
    assert!(matches!(
        &p.process_line("::set-output name=a::b")[0],
        SetOutput { .. }
    ));
    // The token is no command once resumed.
    assert_eq!(
        p.process_line("::abc123xyz::"),
        [Log("::abc123xyz::".into())]
    );
}

#[test]
fn short_stop_tokens_are_not_masked() {
    let mut p = processor();
    let effects = p.process_line("::stop-commands::tok");
    assert!(!effects.iter().any(|e| matches!(e, AddMask(_))));
    assert!(p.is_stopped());
}

#[test]
fn weak_stop_tokens_fail_unless_allowed() {
    for token in ["", "pause-logging", "Pause-Logging", "error", "set-output"] {
        let mut p = processor();
        let line = format!("::stop-commands::{token}");
        let effects = p.process_line(&line);
        assert_eq!(effects.last(), Some(&Fail), "{token:?}");
        assert!(!p.is_stopped(), "{token:?}");
        assert!(matches!(
            &p.process_line("::set-output name=a::b")[0],
            SetOutput { .. }
        ));
    }
    let mut p = CommandProcessor::new(CommandConfig {
        allow_unsecure_stop_tokens: true,
        ..CommandConfig::default()
    });
    let effects = p.process_line("::stop-commands::pause-logging");
    assert!(!effects.contains(&Fail));
    assert!(p.is_stopped());
    assert!(logged(&p.process_line("::pause-logging::")).len() == 1);
    assert!(!p.is_stopped());
}

#[test]
fn annotation_with_all_properties() {
    let mut p = processor();
    let effects = p.process_line(
        "::error file=/work/repo/repo/src/a.rs,line=3,endLine=3,col=2,endColumn=9,title=T::bad",
    );
    let a = annotations(&effects);
    assert_eq!(
        *a[0],
        crate::job::events::Annotation {
            level: AnnotationLevel::Error,
            message: "bad".into(),
            title: Some("T".into()),
            file: Some("src/a.rs".into()),
            line: Some(3),
            end_line: Some(3),
            col: Some(2),
            end_col: Some(9),
        }
    );
    assert!(!effects.contains(&Fail), "annotations do not fail the step");
}

#[test]
fn annotation_normalisation_rules() {
    let mut p = processor();
    let first = |line: &str, p: &mut CommandProcessor| {
        let effects = p.process_line(line);
        let a = annotations(&effects)[0].clone();
        (a.line, a.end_line, a.col, a.end_col)
    };
    // endLine without line -> line = endLine.
    assert_eq!(
        first("::warning endLine=5::m", &mut p),
        (Some(5), Some(5), None, None)
    );
    // endColumn without col -> col = endColumn.
    assert_eq!(
        first("::warning line=1,endColumn=4::m", &mut p),
        (Some(1), None, Some(4), Some(4))
    );
    // Columns without a line are dropped.
    assert_eq!(
        first("::warning col=4::m", &mut p),
        (None, None, None, None)
    );
    // Columns across different lines are dropped.
    assert_eq!(
        first("::warning line=1,endLine=2,col=1,endColumn=3::m", &mut p),
        (Some(1), Some(2), None, None)
    );
    // End before start drops the pair.
    assert_eq!(
        first("::warning line=5,endLine=2::m", &mut p),
        (None, None, None, None)
    );
    assert_eq!(
        first("::warning line=5,col=8,endColumn=3::m", &mut p),
        (Some(5), None, None, None)
    );
}

#[test]
fn files_outside_the_workspace_stay_absolute() {
    let mut p = processor();
    let effects = p.process_line("::notice file=/etc/x,line=1::m");
    assert_eq!(annotations(&effects)[0].file.as_deref(), Some("/etc/x"));
    assert_eq!(annotations(&effects)[0].level, AnnotationLevel::Notice);
    let effects = p.process_line("::notice file=/work/repo/repository/x::m");
    assert_eq!(
        annotations(&effects)[0].file.as_deref(),
        Some("/work/repo/repository/x")
    );
}

#[test]
fn notice_is_plain_text_without_enhanced_annotations() {
    let mut p = CommandProcessor::new(CommandConfig::default());
    assert_eq!(p.process_line("::notice::n"), [Log("::notice::n".into())]);
}

#[test]
fn legacy_commands_are_processed() {
    let mut p = processor();
    let effects = p.process_line("##[warning]legacy");
    assert_eq!(annotations(&effects)[0].message, "legacy");
    assert_eq!(p.process_line("##[endgroup]"), [Log("##[endgroup]".into())]);
}

#[test]
fn debug_text_is_an_effect() {
    let mut p = processor();
    assert_eq!(p.process_line("::debug::a%0Ab"), [Debug("a\nb".into())]);
}

#[test]
fn annotation_log_lines() {
    let mut p = processor();
    let effects = p.process_line("::error::boom");
    assert_eq!(
        annotation_log_line(annotations(&effects)[0]),
        "##[error]boom"
    );
}

#[test]
fn bool_settings() {
    assert!(parse_bool_setting(" TRUE "));
    assert!(!parse_bool_setting("1"));
    assert!(!parse_bool_setting("yes"));
}

#[test]
fn legacy_escape_vectors() {
    let reg = |n: &str| n == "do-something";
    let c = parse_legacy("##[do-something k1=v1;]msg", reg).unwrap();
    assert_eq!((c.property("k1"), c.data.as_str()), (Some("v1"), "msg"));
    let c = parse_legacy("##[do-something k1=%3B=%0D=%0A=%5D;]%3B-%0D-%0A-%5D", reg).unwrap();
    assert_eq!(c.property("k1"), Some(";=\r=\n=]"));
    assert_eq!(c.data, ";-\r-\n-]");
    // Double-escaped text is unescaped once.
    let c = parse_legacy("##[do-something k1=%253B=%250D;]%253B-%250A-%255D", reg).unwrap();
    assert_eq!(c.property("k1"), Some("%3B=%0D"));
    assert_eq!(c.data, "%3B-%0A-%5D");
    let c = parse_legacy("##[do-something k1=;k2=;]", reg).unwrap();
    assert!(c.properties.is_empty());
    assert!(parse_legacy(">>>   ##[do-something k1=v1;]msg", reg).is_some());
    assert!(parse_legacy("##[other]msg", reg).is_none());
}

#[test]
fn v2_escape_vectors() {
    let reg = |n: &str| n == "do-something";
    let c = parse_v2(
        "::do-something k1=;=%2C=%0D=%0A=]=%3A,::;-%0D-%0A-]-:-,",
        reg,
    )
    .unwrap();
    assert_eq!(c.property("k1"), Some(";=,=\r=\n=]=:"));
    assert_eq!(c.data, ";-\r-\n-]-:-,");
    let c = parse_v2("::do-something k1=;=%252C=%250D=%253A,::;-%250D-%250A", reg).unwrap();
    assert_eq!(c.property("k1"), Some(";=%2C=%0D=%3A"));
    assert_eq!(c.data, ";-%0D-%0A");
    let c = parse_v2("::do-something k1=,k2=,::", reg).unwrap();
    assert!(c.properties.is_empty());
    assert_eq!(
        parse_v2("   ::do-something k1=v1,::msg", reg).unwrap().data,
        "msg"
    );
    assert!(parse_v2("   >>>   ::do-something k1=v1,::msg", reg).is_none());
}

#[test]
fn echo_without_a_value_fails() {
    let mut p = processor();
    assert_eq!(p.process_line("::echo::").last(), Some(&Fail));
    assert_eq!(
        p.process_line("::echo::Off   ").last(),
        Some(&Debug("Setting echo command value to 'off'".into()))
    );
}

#[test]
fn runner_markers_in_output_are_escaped_but_commands_still_work() {
    let mut p = processor();
    assert_eq!(
        logged(&p.process_line("x ##[start-action display=a;id=b] y")),
        ["x ##[\\start-action display=a;id=b] y"]
    );
    assert_eq!(
        logged(&p.process_line("##[end-action id=b;outcome=success]")),
        ["##[\\end-action id=b;outcome=success]"]
    );
    assert_eq!(logged(&p.process_line("plain line")), ["plain line"]);
    // A real command is processed, not escaped.
    assert_eq!(
        p.process_line("::add-mask::s3cr3t"),
        [AddMask("s3cr3t".into())]
    );
}
