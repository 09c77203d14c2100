//! Number conversions of the expression language: string -> number (`ParseNumber` of the official
//! runner: invariant decimal, signed-int32 `0x` hex and `0o` octal, `Infinity`) and
//! number -> string (.NET `G15` invariant formatting, with `-0` printed as `0`).

/// Significant digits of the `G15` format.
const G15_DIGITS: usize = 15;

/// Converts a string to a number the way the official runner does; `NaN` when it is not a number.
///
/// Leading and trailing whitespace is ignored and an empty string is `0`.
pub fn parse_number(text: &str) -> f64 {
    let text = text.trim();
    if text.is_empty() {
        return 0.0;
    }
    if let Some(value) = parse_decimal(text) {
        return value;
    }
    if let Some(digits) = text.strip_prefix("0x") {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_int32_bits(digits, 16);
        }
        return f64::NAN;
    }
    if let Some(digits) = text.strip_prefix("0o") {
        if !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return parse_int32_bits(digits, 8);
        }
        return f64::NAN;
    }
    f64::NAN
}

/// Parses hex/octal digits as the 32 bits of a signed int32 (`0xFFFFFFFF` is -1); NaN on overflow.
fn parse_int32_bits(digits: &str, radix: u32) -> f64 {
    match u32::from_str_radix(digits, radix) {
        // Reinterpreting the bits is the documented behaviour (`Int32.TryParse` with hex style).
        Ok(bits) => f64::from(bits as i32),
        Err(_) => f64::NAN,
    }
}

/// .NET `Double.TryParse` with leading sign, decimal point and exponent (invariant culture), plus
/// the (case-insensitive) `Infinity` / `NaN` symbols .NET Core accepts.
fn parse_decimal(text: &str) -> Option<f64> {
    let unsigned = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    if unsigned.eq_ignore_ascii_case("infinity") {
        let negative = text.starts_with('-');
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if unsigned.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if !is_decimal_syntax(unsigned) {
        return None;
    }
    text.parse::<f64>().ok()
}

/// `digits [. digits] [(e|E) [+|-] digits]` with at least one mantissa digit.
fn is_decimal_syntax(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut mantissa_digits = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
        mantissa_digits += 1;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
            mantissa_digits += 1;
        }
    }
    if mantissa_digits == 0 {
        return false;
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == bytes.len()
}

/// Formats a number like .NET `ToString("G15", InvariantCulture)`, except that negative zero is
/// `0` (as the newer runner engine and the conformance corpus do).
pub fn format_number(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    // `{:.14e}` rounds the exact binary value to 15 significant digits: `d.dddddddddddddde<exp>`.
    let scientific = format!("{:.*e}", G15_DIGITS - 1, value.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::with_capacity(24);
    if value < 0.0 {
        out.push('-');
    }
    if (-5 < exponent) && exponent < G15_DIGITS as i32 {
        push_fixed(&mut out, digits, exponent);
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exponent.unsigned_abs()));
    }
    out
}

/// Writes significant `digits` (first digit at 10^`exponent`) in fixed notation.
fn push_fixed(out: &mut String, digits: &str, exponent: i32) {
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let integer_len = exponent as usize + 1;
    if digits.len() <= integer_len {
        out.push_str(digits);
        for _ in digits.len()..integer_len {
            out.push('0');
        }
    } else {
        out.push_str(&digits[..integer_len]);
        out.push('.');
        out.push_str(&digits[integer_len..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_hex_octal_and_infinity() {
        assert_eq!(parse_number(" 123456.789 "), 123456.789);
        assert_eq!(parse_number("+1.5"), 1.5);
        assert_eq!(parse_number("-1.2E+2"), -120.0);
        assert_eq!(parse_number(".5"), 0.5);
        assert_eq!(parse_number("1."), 1.0);
        assert_eq!(parse_number(""), 0.0);
        assert_eq!(parse_number("   "), 0.0);
        assert_eq!(parse_number("0xff"), 255.0);
        assert_eq!(parse_number("0xFFFFFFFF"), -1.0);
        assert!(parse_number("0x1FFFFFFFF").is_nan());
        assert_eq!(parse_number("0o17"), 15.0);
        assert!(parse_number("0o8").is_nan());
        assert_eq!(parse_number("Infinity"), f64::INFINITY);
        assert_eq!(parse_number("-Infinity"), f64::NEG_INFINITY);
        assert_eq!(parse_number("+Infinity"), f64::INFINITY);
    }

    #[test]
    fn rejects_what_dotnet_rejects() {
        for text in [
            "-Inf", "-0xFF", "0x01p2", "0xFZ", "1.2.3", "1e", ".", "-", "1,000", "abc", "0x", "e5",
        ] {
            assert!(parse_number(text).is_nan(), "{text}");
        }
    }

    #[test]
    fn formats_like_g15() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-2.0, "-2"),
            (0.5, "0.5"),
            (123456.789, "123456.789"),
            (0.845_512_408_225_570_1, "0.84551240822557"),
            (1e15, "1E+15"),
            (1e14, "100000000000000"),
            (123_456_789_012_345_680.0, "1.23456789012346E+17"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1.5e-7, "1.5E-07"),
            (1e308, "1E+308"),
            (0.1 + 0.2, "0.3"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (999_999_999_999_999.9, "1E+15"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_number(*value), *expected, "{value:?}");
        }
    }
}
