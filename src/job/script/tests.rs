use super::*;
use crate::job::plan::tests::{facts, sample_message};
use crate::job::plan::{JobPlan, RunnerFacts};

fn argv_for(shell: Option<&str>, has_bash: bool) -> Result<Vec<String>, ScriptError> {
    let shell = resolve_shell(shell, has_bash)?;
    let mut argv = vec![shell.program.clone()];
    argv.extend(split_args(&format_template(
        &shell.template,
        "/w/_temp/s.sh",
    )?));
    Ok(argv)
}

#[test]
fn default_shell_is_bash_e_or_sh_e() {
    assert_eq!(
        argv_for(None, true).unwrap(),
        ["bash", "-e", "/w/_temp/s.sh"]
    );
    assert_eq!(
        argv_for(Some("  "), false).unwrap(),
        ["sh", "-e", "/w/_temp/s.sh"]
    );
    assert_eq!(resolve_shell(None, true).unwrap().extension, ".sh");
}

#[test]
fn builtin_shells_use_the_runner_templates() {
    assert_eq!(
        argv_for(Some("bash"), true).unwrap(),
        [
            "bash",
            "--noprofile",
            "--norc",
            "-e",
            "-o",
            "pipefail",
            "/w/_temp/s.sh"
        ]
    );
    assert_eq!(
        argv_for(Some("SH"), true).unwrap(),
        ["SH", "-e", "/w/_temp/s.sh"]
    );
    assert_eq!(
        argv_for(Some("python"), true).unwrap(),
        ["python", "/w/_temp/s.sh"]
    );
    assert_eq!(
        argv_for(Some("pwsh"), true).unwrap(),
        ["pwsh", "-command", ". '/w/_temp/s.sh'"]
    );
    assert_eq!(
        argv_for(Some("cmd"), true).unwrap(),
        [
            "cmd",
            "/D",
            "/E:ON",
            "/V:OFF",
            "/S",
            "/C",
            "CALL /w/_temp/s.sh"
        ]
    );
    for (shell, ext) in [
        ("bash", ".sh"),
        ("python", ".py"),
        ("pwsh", ".ps1"),
        ("powershell", ".ps1"),
        ("cmd", ".cmd"),
    ] {
        assert_eq!(
            resolve_shell(Some(shell), true).unwrap().extension,
            ext,
            "{shell}"
        );
    }
}

#[test]
fn custom_shells_split_at_the_first_space_and_need_the_placeholder() {
    assert_eq!(
        argv_for(Some("bash -x {0}"), true).unwrap(),
        ["bash", "-x", "/w/_temp/s.sh"]
    );
    assert_eq!(
        resolve_shell(Some("bash -x {0}"), true).unwrap().extension,
        ".sh"
    );
    let absolute = resolve_shell(Some("/bin/bash {0}"), true).unwrap();
    assert_eq!(
        (absolute.program.as_str(), absolute.extension),
        ("/bin/bash", "")
    );
    assert_eq!(
        argv_for(Some("perl  -w {0}"), true).unwrap(),
        ["perl", "-w", "/w/_temp/s.sh"]
    );
    let err = resolve_shell(Some("perl -w"), true).unwrap_err();
    assert!(
        err.to_string().starts_with("Invalid shell option."),
        "{err}"
    );
    assert!(matches!(
        resolve_shell(Some("unknownshell"), true),
        Err(ScriptError::InvalidShell { .. })
    ));
}

#[test]
fn composite_format_handles_braces_and_rejects_other_placeholders() {
    assert_eq!(format_template("{{x}} {0}", "p").unwrap(), "{x} p");
    assert!(format_template("{1}", "p").is_err());
    assert!(format_template("{0:x}", "p").is_err());
    assert!(format_template("a } b {0}", "p").is_err());
    assert!(matches!(
        argv_for(Some("bash {0} {1}"), true),
        Err(ScriptError::BadTemplate { .. })
    ));
}

#[test]
fn argv_splitting_follows_dotnet_rules() {
    let cases: &[(&str, &[&str])] = &[
        ("a b\tc", &["a", "b", "c"]),
        ("  \"a b\" c  ", &["a b", "c"]),
        ("\"a \"\"q\"\" b\"", &["a \"q\" b"]),
        (r#"a\\b \\"c d" \"e"#, &[r"a\\b", r"\c d", "\"e"]),
        (r#"x\\\"y"#, &[r#"x\"y"#]),
        ("\"\"", &[""]),
        ("", &[]),
    ];
    for (line, expected) in cases {
        assert_eq!(split_args(line), *expected, "{line:?}");
    }
}

#[test]
fn quotes_in_the_script_path_are_escaped_before_splitting() {
    let mut plan = JobPlan::new(&sample_message(), &facts()).expect("plans");
    plan.layout.temp = "/w/a\"b".into();
    let contexts = plan.contexts.clone();
    let defaults = RunDefaults::default();
    let request = request(&contexts, &defaults, "echo", Some("python"));
    let rendered = render_step(&plan, &request).expect("renders");
    assert_eq!(rendered.argv[1], rendered.script_path);
    assert!(rendered.script_path.starts_with("/w/a\"b/"));
}

fn request<'a>(
    contexts: &'a Object,
    defaults: &'a RunDefaults,
    script: &'a str,
    shell: Option<&'a str>,
) -> ScriptRequest<'a> {
    ScriptRequest {
        script,
        shell,
        working_directory: None,
        defaults,
        env: &[],
        path_prepends: &[],
        guest_path: None,
        contexts,
        script_id: Uuid::from_u128(0x1234),
    }
}

#[test]
fn rendered_step_has_script_file_argv_cwd_and_env() {
    let plan = JobPlan::new(&sample_message(), &facts()).expect("plans");
    let defaults = RunDefaults {
        shell: Some("sh".into()),
        working_directory: Some("src".into()),
    };
    let env = vec![
        ("FOO".to_owned(), "bar".to_owned()),
        ("GITHUB_SHA".to_owned(), "user-value".to_owned()),
        ("CI".to_owned(), "false".to_owned()),
    ];
    let prepends = vec!["/first".to_owned(), "/second".to_owned()];
    let mut req = request(&plan.contexts, &defaults, "echo hi\n", None);
    req.env = &env;
    req.path_prepends = &prepends;
    req.guest_path = Some("/usr/bin:/bin");
    let rendered = render_step(&plan, &req).expect("renders");
    assert_eq!(
        rendered.script_path,
        "/work/_temp/00000000-0000-0000-0000-000000001234.sh"
    );
    assert_eq!(rendered.script, "echo hi\n");
    assert_eq!(rendered.argv, ["sh", "-e", rendered.script_path.as_str()]);
    assert_eq!(rendered.cwd, "/work/hello/hello/src");
    let get = |k: &str| {
        rendered
            .env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("FOO"), Some("bar"));
    assert_eq!(get("PATH"), Some("/second:/first:/usr/bin:/bin"));
    assert_eq!(
        get("GITHUB_SHA"),
        Some("abc123"),
        "contexts override user values"
    );
    assert_eq!(get("GITHUB_ACTIONS"), Some("true"));
    assert_eq!(get("CI"), Some("false"), "CI is kept when the env sets it");
    assert_eq!(
        get("ACTIONS_ID_TOKEN_REQUEST_URL"),
        Some("https://id.example/token")
    );
    assert_eq!(
        rendered
            .env
            .iter()
            .filter(|(k, _)| k == "GITHUB_SHA")
            .count(),
        1
    );
    assert_eq!(rendered.env[0].0, "FOO", "env context comes first");

    let command = rendered.to_guest_command(None);
    assert_eq!(command.cwd.as_deref(), Some("/work/hello/hello/src"));
    assert_eq!(command.argv, rendered.argv);
}

#[test]
fn step_inputs_win_over_defaults_and_no_prepends_leave_path_alone() {
    let plan = JobPlan::new(
        &sample_message(),
        &RunnerFacts {
            has_bash: false,
            ..facts()
        },
    )
    .expect("plans");
    let defaults = RunDefaults {
        shell: Some("bash".into()),
        working_directory: Some("src".into()),
    };
    let mut req = request(&plan.contexts, &defaults, "print(1)", Some("python"));
    req.working_directory = Some("/abs/dir");
    let rendered = render_step(&plan, &req).expect("renders");
    assert_eq!(rendered.argv[0], "python");
    assert!(rendered.script_path.ends_with(".py"));
    assert_eq!(rendered.cwd, "/abs/dir");
    assert!(!rendered.env.iter().any(|(k, _)| k == "PATH"));
    assert_eq!(
        rendered.env.last().map(|(k, v)| (k.as_str(), v.as_str())),
        Some(("CI", "true"))
    );

    let mut req = request(&plan.contexts, &defaults, "x", None);
    req.working_directory = Some("");
    let rendered = render_step(&plan, &req).expect("renders");
    assert_eq!(
        rendered.cwd, "/work/hello/hello",
        "an empty input still overrides the default"
    );

    let none = RunDefaults::default();
    let rendered = render_step(&plan, &request(&plan.contexts, &none, "x", None)).expect("renders");
    assert_eq!(rendered.argv[0], "sh", "no bash in the image");
    assert_eq!(rendered.cwd, "/work/hello/hello");
}

#[test]
fn path_prepend_rules() {
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        prepend_path(&list(&["/a", "/b"]), "/usr/bin"),
        "/b:/a:/usr/bin"
    );
    assert_eq!(prepend_path(&list(&["/a"]), ""), "/a");
    assert_eq!(prepend_path(&list(&["/a"]), "/a:/usr/bin"), "/a:/usr/bin");
    assert_eq!(prepend_path(&[], "/usr/bin"), "/usr/bin");
    assert_eq!(working_directory("/ws", Some("")), "/ws");
    assert_eq!(working_directory("/ws", Some("a/../b")), "/ws/a/../b");
}

#[test]
fn wrappers_for_cmd_and_powershell() {
    let cmd = resolve_shell(Some("cmd"), true).unwrap();
    assert_eq!(script_contents("dir", &cmd), "@echo off\ndir");
    let pwsh = resolve_shell(Some("pwsh"), true).unwrap();
    let text = script_contents("Write-Host hi", &pwsh);
    assert!(text.starts_with("$ErrorActionPreference = 'stop'\nWrite-Host hi\n"));
    assert!(text.ends_with("{ exit $LASTEXITCODE }"));
    let bash = resolve_shell(Some("bash"), true).unwrap();
    assert_eq!(script_contents("a\n", &bash), "a\n");
}
