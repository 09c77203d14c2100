use super::variants::{
    base64_shifted, json_escape, powershell_post_ampersand, powershell_pre_ampersand,
    trim_double_quotes, uri_data_escape, xml_escape,
};
use super::*;
use proptest::prelude::*;

fn masker(values: &[&str]) -> SecretMasker {
    let mut m = SecretMasker::new();
    for v in values {
        m.add_value(v);
    }
    m
}

#[test]
fn masks_plain_occurrences() {
    let m = masker(&["hunter2"]);
    assert_eq!(m.mask("pw=hunter2 and hunter2!"), "pw=*** and ***!");
    assert_eq!(m.mask("nothing here"), "nothing here");
}

#[test]
fn value_is_trimmed_and_multi_line_values_mask_each_line() {
    let m = masker(&["  first line\n  second line \r\nthird\n\n"]);
    assert_eq!(m.mask("a first line b"), "a *** b");
    assert_eq!(m.mask("second line"), "***");
    assert_eq!(m.mask("x third y"), "x *** y");
}

#[test]
fn blank_values_register_nothing() {
    let m = masker(&["", "   ", "\n\t"]);
    assert!(m.is_empty());
    assert_eq!(m.mask("   "), "   ");
}

#[test]
fn overlapping_and_adjacent_matches_merge_into_one_mask() {
    let m = masker(&["abcd", "cdef"]);
    assert_eq!(m.mask("xabcdefy"), "x***y");
    let m = masker(&["ab", "cd"]);
    assert_eq!(m.mask("abcd"), "***");
    let m = masker(&["aaa"]);
    assert_eq!(m.mask("aaaaa"), "***");
}

#[test]
fn json_and_quote_escaped_forms_are_masked() {
    let secret = "p\"a'ss\\word";
    let m = masker(&[secret]);
    let json = serde_json::json!({ "k": secret }).to_string();
    assert!(!m.mask(&json).contains("ss\\\\word"), "{}", m.mask(&json));
    assert_eq!(m.mask(&json), r#"{"k":"***"}"#);
    assert_eq!(m.mask("x p\\\"a'ss\\word"), "x ***");
    assert_eq!(m.mask("x p\"a''ss\\word"), "x ***");
}

#[test]
fn uri_and_xml_escaped_forms_are_masked() {
    let m = masker(&["a b&c<d>"]);
    assert_eq!(m.mask("?q=a%20b%26c%3Cd%3E&x"), "?q=***&x");
    assert_eq!(m.mask("<v>a b&amp;c&lt;d&gt;</v>"), "<v>***</v>");
}

#[test]
fn base64_at_every_alignment_is_masked() {
    let secret = "correct-horse-battery";
    let m = masker(&[secret]);
    for prefix in ["", "u:", "us:", "use:"] {
        let encoded = STANDARD.encode(format!("{prefix}{secret}"));
        let masked = m.mask(&encoded);
        assert!(
            masked.contains(MASK),
            "prefix {prefix:?}: {encoded} -> {masked}"
        );
        // Whatever remains visible is at most the few characters mixing in neighbours.
        let visible = masked.replace(MASK, "");
        assert!(visible.len() <= 8, "prefix {prefix:?}: {masked}");
    }
    let padded = STANDARD.encode(secret);
    assert_eq!(m.mask(&padded), MASK);
}

#[test]
fn github_token_basic_auth_form_is_masked() {
    let mut m = SecretMasker::new();
    m.add_github_token("ghs_abc123");
    let header = STANDARD.encode("x-access-token:ghs_abc123");
    assert_eq!(
        m.mask(&format!("Authorization: basic {header}")),
        "Authorization: basic ***"
    );
}

#[test]
fn quote_trimmed_and_ampersand_fragments() {
    let m = masker(&["\"long-quoted\""]);
    assert_eq!(m.mask("v=long-quoted;"), "v=***;");
    let m = masker(&["abcdef&ghijkl"]);
    assert_eq!(m.mask("[abcdef&] [ghijkl]"), "[***] [***]");
    // Short quoted values are not trimmed.
    assert_eq!(trim_double_quotes("\"short\""), "");
}

#[test]
fn regex_hints_mask_as_regex_and_literal() {
    let mut m = SecretMasker::new();
    m.add_regex("tok_[0-9]+").unwrap();
    assert_eq!(m.mask("a tok_123 b tok_9"), "a *** b ***");
    assert_eq!(m.mask("the hint tok_[0-9]+ itself"), "the hint *** itself");
    assert!(m.add_regex("(").is_err());
}

#[test]
fn masks_invalid_utf8_bytes() {
    let m = masker(&["sekrit"]);
    let masked = m.mask_bytes(b"\xff\xfesekrit\xff");
    assert_eq!(masked, b"\xff\xfe***\xff");
}

#[test]
fn encoders_match_official_forms() {
    assert_eq!(uri_data_escape("a b/é~"), "a%20b%2F%C3%A9~");
    assert_eq!(xml_escape("<'&\">"), "&lt;&apos;&amp;&quot;&gt;");
    assert_eq!(json_escape("a\"b\\c\n\u{1}"), "a\\\"b\\\\c\\n\\u0001");
    assert_eq!(base64_shifted("abcd", 1), STANDARD.encode("bcd"));
    assert_eq!(base64_shifted("a", 2), STANDARD.encode("a"));
    assert_eq!(powershell_pre_ampersand("secret1&+secret2"), "secret1&+");
    assert_eq!(powershell_post_ampersand("secret1&+secret2"), "ecret2");
    assert_eq!(powershell_post_ampersand("part1&part2&part3x"), "part3x");
}

#[test]
fn values_added_between_lines_mask_every_one() {
    let mut m = SecretMasker::new();
    for i in 0..3000 {
        m.add_value(&format!("alt-secret-{i:05}x"));
        let earlier = format!("alt-secret-{:05}x", i / 2);
        let line = format!("now alt-secret-{i:05}x then {earlier} end");
        assert_eq!(m.mask(&line), "now *** then *** end", "value {i}");
    }
    assert_eq!(m.mask("alt-secret-99999x"), "alt-secret-99999x");
}

#[test]
fn past_the_limits_every_line_is_withheld() {
    let mut m = SecretMasker {
        limits: (10, 1 << 20),
        ..SecretMasker::default()
    };
    for i in 0..10 {
        m.add_value(&format!("value-{i}"));
    }
    assert!(!m.is_overflowed());
    assert_eq!(m.mask("a value-3 b"), "a *** b");
    m.add_value("one-too-many");
    assert!(m.is_overflowed());
    assert_eq!(m.mask("anything at all, one-too-many or not"), MASK);
    assert_eq!(m.mask(""), "");
    // The byte limit likewise.
    let mut m = SecretMasker {
        limits: (1000, 64),
        ..SecretMasker::default()
    };
    m.add_value("short");
    assert!(!m.is_overflowed());
    m.add_value(&"x".repeat(100));
    assert!(m.is_overflowed());
    assert_eq!(m.mask_bytes(b"bytes too"), MASK.as_bytes());
}

#[test]
fn a_burst_of_values_masks_every_one() {
    let mut m = SecretMasker::new();
    let started = std::time::Instant::now();
    for i in 0..5000 {
        m.add_value(&format!("burst-secret-{i:05}"));
    }
    let registered = started.elapsed();
    let line = "a burst-secret-00042 b burst-secret-04999 c";
    assert_eq!(m.mask(line), "a *** b *** c");
    println!(
        "5000 values: registered in {registered:?}, first line masked after {:?}",
        started.elapsed()
    );
}

proptest! {
    #[test]
    fn masked_text_never_contains_a_secret(
        secrets in proptest::collection::vec("[a-zA-Z0-9!\"'&<> %]{1,12}", 1..4),
        filler in proptest::collection::vec("[a-zA-Z0-9 \"'%]{0,8}", 0..6),
    ) {
        let m = masker(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
        let mut text = String::new();
        for (i, f) in filler.iter().enumerate() {
            text.push_str(f);
            text.push_str(&secrets[i % secrets.len()]);
        }
        let masked = m.mask(&text);
        for s in &secrets {
            let s = s.trim();
            if !s.is_empty() {
                prop_assert!(!masked.contains(s), "{masked:?} contains {s:?}");
            }
        }
    }
}
