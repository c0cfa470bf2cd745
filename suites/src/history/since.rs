//! `--since 14d`: a look-back window.

use super::HistoryError;

/// Seconds in a `--since` value: a whole number and a unit (`s`, `m`, `h`, `d`, `w`), e.g.
/// `90m`, `12h`, `14d`, `2w`.
pub fn parse_since(input: &str) -> Result<i64, HistoryError> {
    let bad = |why| HistoryError::BadSince {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("it has no unit"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let n: i64 = num.parse().map_err(|_| bad("the number is too large"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("the unit is not one of s, m, h, d, w")),
    };
    if n == 0 {
        return Err(bad("it is zero"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| bad("the number is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_since("14d").unwrap(), 14 * 86_400);
        assert_eq!(parse_since("90m").unwrap(), 5400);
        assert_eq!(parse_since("2w").unwrap(), 1_209_600);
        assert_eq!(parse_since("30s").unwrap(), 30);
        assert_eq!(parse_since(" 12h ").unwrap(), 43_200);
    }

    #[test]
    fn bad_input_says_what_and_how() {
        for (input, why) in [
            ("14", "it has no unit"),
            ("d", "it does not start with a number"),
            ("14 days", "the unit is not one of s, m, h, d, w"),
            ("1.5d", "the unit is not one of s, m, h, d, w"),
            ("-3d", "it does not start with a number"),
            ("0d", "it is zero"),
            ("99999999999999999999d", "the number is too large"),
        ] {
            let e = parse_since(input).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(why), "{input}: {text}");
            assert!(text.contains("14d"), "{text}");
            assert!(text.contains(&format!("{input:?}")), "{text}");
        }
    }
}
