//! Tests of the file-command grammar. The cases follow the official runner's
//! `SetEnvFileCommandL0` / `SetOutputFileCommandL0` scenarios (written here independently): files
//! are written with a UTF-8 BOM and `\n` line ends, as those tests do on Linux.

use super::*;

/// A file as the official tests write it: BOM, lines joined by `sep`.
fn file(lines: &[&str], sep: &str) -> Vec<u8> {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(lines.join(sep).as_bytes());
    bytes
}

fn pairs(lines: &[&str]) -> Vec<(String, String)> {
    parse_key_values(&file(lines, "\n")).unwrap()
}

fn kv(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[test]
fn empty_file_has_no_pairs() {
    assert!(parse_key_values(b"").unwrap().is_empty());
    assert!(pairs(&[]).is_empty());
}

#[test]
fn simple_pair() {
    assert_eq!(pairs(&["MY_ENV=MY VALUE"]), [kv("MY_ENV", "MY VALUE")]);
}

#[test]
fn empty_lines_between_pairs_are_skipped() {
    assert_eq!(
        pairs(&["", "A=first value", "", "B=second value", ""]),
        [kv("A", "first value"), kv("B", "second value")]
    );
}

#[test]
fn empty_values_are_kept() {
    assert_eq!(
        pairs(&["A=x", "B=", "C=z"]),
        [kv("A", "x"), kv("B", ""), kv("C", "z")]
    );
}

#[test]
fn value_splits_at_the_first_equals_sign() {
    assert_eq!(
        pairs(&["A==abc", "B=def=ghi", "C=jkl="]),
        [kv("A", "=abc"), kv("B", "def=ghi"), kv("C", "jkl=")]
    );
}

#[test]
fn equals_before_heredoc_marker_is_a_plain_pair() {
    assert_eq!(pairs(&["A=b<<EOF"]), [kv("A", "b<<EOF")]);
}

#[test]
fn heredoc_joins_lines_without_the_last_newline() {
    assert_eq!(
        pairs(&["V<<EOF", "line one", "line two", "line three", "EOF"]),
        [kv("V", "line one\nline two\nline three")]
    );
}

#[test]
fn heredoc_without_lines_is_empty() {
    assert_eq!(pairs(&["V<<EOF", "EOF"]), [kv("V", "")]);
}

#[test]
fn heredocs_between_empty_lines() {
    assert_eq!(
        pairs(&[
            "", "A<<EOF", "hello", "world", "EOF", "", "B<<EOF", "HELLO", "AGAIN", "EOF", ""
        ]),
        [kv("A", "hello\nworld"), kv("B", "HELLO\nAGAIN")]
    );
}

#[test]
fn heredoc_special_delimiters_and_contents() {
    let got = pairs(&[
        "A<<=EOF",
        "hello",
        "one",
        "=EOF",
        "B<<<EOF",
        "hello",
        "two",
        "<EOF",
        "C<<EOF",
        "hello",
        "",
        "three",
        "",
        "EOF",
        "D<<EOF",
        "hello=four",
        "EOF",
        "E<<EOF",
        " EOF",
        "EOF",
    ]);
    assert_eq!(
        got,
        [
            kv("A", "hello\none"),
            kv("B", "hello\ntwo"),
            kv("C", "hello\n\nthree\n"),
            kv("D", "hello=four"),
            kv("E", " EOF"),
        ]
    );
}

#[test]
fn delimiter_line_may_end_the_file_without_newline() {
    assert_eq!(parse_key_values(b"V<<EOF\nx\nEOF").unwrap(), [kv("V", "x")]);
}

#[test]
fn carriage_returns_stay_in_values() {
    // `V<<EOF\r` makes the delimiter "EOF\r"; the line "EOF\r" then matches it.
    assert_eq!(
        parse_key_values(b"A=x\r\nV<<EOF\r\nl1\r\nEOF\r\nV2<<EOF\nl2\r\nEOF\n").unwrap(),
        [kv("A", "x\r"), kv("V", "l1\r"), kv("V2", "l2\r")]
    );
    // A CRLF file with an LF-only delimiter never finds it.
    let err = parse_key_values(b"V<<EOF\nl1\r\nEOF\r\n").unwrap_err();
    assert!(
        matches!(err, FileCommandError::DelimiterNotFound { .. }),
        "{err:?}"
    );
}

#[test]
fn heredoc_joined_by_spaces_has_no_delimiter() {
    let bytes = file(&["V<<EOF", "line one", "line two", "EOF"], " ");
    let err = parse_key_values(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("Matching delimiter not found"),
        "{err}"
    );
}

#[test]
fn heredoc_value_at_end_of_file_without_newline_is_refused() {
    // The delimiter is "EOF line one" (joined by spaces), never found; the last value line
    // ends the file without a newline.
    let bytes = file(
        &["V<<EOF", "line one\n  line two\n  line three", "EOF"],
        " ",
    );
    let err = parse_key_values(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("EOF marker missing new line"),
        "{err}"
    );
}

#[test]
fn empty_name_is_refused() {
    let err = parse_key_values(b"=value\n").unwrap_err();
    assert_eq!(
        err,
        FileCommandError::EmptyName {
            line: "=value".into()
        }
    );
    assert!(err.to_string().contains("Name must not be empty"));
}

#[test]
fn heredoc_with_empty_name_or_delimiter_is_refused() {
    for text in ["<<EOF\nx\nEOF\n", "V<<\nx\n\n"] {
        let err = parse_key_values(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, FileCommandError::EmptyNameOrDelimiter { .. }),
            "{text:?}: {err:?}"
        );
    }
}

#[test]
fn line_without_equals_or_heredoc_is_invalid_format() {
    let err = parse_key_values(b"A=1\nJUSTANAME\n").unwrap_err();
    assert_eq!(err.to_string(), "Invalid format 'JUSTANAME'");
}

#[test]
fn node_options_is_blocked_in_any_case() {
    assert!(is_blocked_env("NODE_OPTIONS"));
    assert!(is_blocked_env("node_options"));
    assert!(!is_blocked_env("NODE_OPTIONS_X"));
    assert_eq!(
        blocked_env_message("node_Options"),
        "Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command."
    );
}

#[test]
fn path_lines_are_untrimmed_and_non_empty() {
    assert_eq!(
        parse_path_lines(b"\xEF\xBB\xBF/opt/a\n\n /opt/b \r\n/opt/c"),
        ["/opt/a", " /opt/b ", "/opt/c"]
    );
}

#[test]
fn re_added_path_moves_to_the_end() {
    let mut prepend = Vec::new();
    add_path_entries(&mut prepend, &["/a".into(), "/b".into()]);
    add_path_entries(&mut prepend, &["/a".into()]);
    assert_eq!(prepend, ["/b", "/a"]);
}

#[test]
fn step_summary_limits() {
    assert_eq!(parse_step_summary(b""), StepSummary::Empty);
    assert_eq!(
        parse_step_summary(b"# Hi\n"),
        StepSummary::Markdown("# Hi\n".into())
    );
    let exact = vec![b'x'; STEP_SUMMARY_MAX_BYTES];
    assert!(matches!(
        parse_step_summary(&exact),
        StepSummary::Markdown(_)
    ));
    let over = vec![b'x'; STEP_SUMMARY_MAX_BYTES + 1];
    match parse_step_summary(&over) {
        StepSummary::TooLarge(message) => {
            assert!(message.contains("supports content up to a size of 1024k, got 1024k"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_names_carry_prefix_and_suffix() {
    assert_eq!(FileCommand::Env.file_name("u"), "set_env_u");
    assert_eq!(FileCommand::Output.env_var(), "GITHUB_OUTPUT");
    assert_eq!(FileCommand::StepSummary.context_name(), "step_summary");
}
