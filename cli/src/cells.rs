//! How values look inside a table cell: ages (`5s`, `3m`, `never`) and tag sets
//! (`k=v1,v2 k2=v3`), as Kuma's `output/table` renders them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// The age of `then` at `now` in its largest whole unit (`Ns`, `Nm`, `Nh`, `Nd`, `Ny`), or
/// `never` when there is no time. A time in the future (clock skew) is `0s`.
pub fn ago(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match then {
        None => "never".to_string(),
        Some(then) => age((now - then).num_seconds()),
    }
}

/// A duration in seconds in its largest whole unit.
pub fn age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86_400);
    if seconds < 60 {
        format!("{seconds}s")
    } else if minutes < 60 {
        format!("{minutes}m")
    } else if hours < 24 {
        format!("{hours}h")
    } else if days < 365 {
        format!("{days}d")
    } else {
        format!("{}y", days / 365)
    }
}

/// Reads an API timestamp (RFC 3339); anything else counts as no time.
pub fn parse_time(value: Option<&serde_json::Value>) -> Option<DateTime<Utc>> {
    let text = value?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Tags as `key=v1,v2 key2=v3`, keys in order (the map is sorted), values as given.
pub fn tags<K: AsRef<str>, V: AsRef<str>>(tags: &BTreeMap<K, Vec<V>>) -> String {
    tags.iter()
        .map(|(key, values)| {
            let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
            format!("{}={}", key.as_ref(), values.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m");
        assert_eq!(age(3599), "59m");
        assert_eq!(age(3600), "1h");
        assert_eq!(age(86_399), "23h");
        assert_eq!(age(86_400), "1d");
        assert_eq!(age(364 * 86_400 + 86_399), "364d");
        assert_eq!(age(365 * 86_400), "1y");
        assert_eq!(age(3 * 365 * 86_400 + 5), "3y");
    }

    #[test]
    fn a_time_in_the_future_is_zero_seconds_old() {
        assert_eq!(age(-5), "0s");
    }

    #[test]
    fn no_time_is_never() {
        assert_eq!(ago(None, Utc::now()), "never");
    }

    #[test]
    fn ago_counts_from_the_given_now() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let then = now - chrono::Duration::seconds(150);
        assert_eq!(ago(Some(then), now), "2m");
    }

    #[test]
    fn api_timestamps_are_parsed_and_garbage_is_no_time() {
        let t = parse_time(Some(&serde_json::json!("2026-11-21T10:00:00.123456Z"))).unwrap();
        assert_eq!(
            t,
            Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
        assert_eq!(parse_time(Some(&serde_json::json!("yesterday"))), None);
        assert_eq!(parse_time(Some(&serde_json::json!(5))), None);
        assert_eq!(parse_time(None), None);
    }

    #[test]
    fn tags_render_sorted_with_joined_values() {
        let mut map = BTreeMap::new();
        map.insert("version", vec!["1", "2"]);
        map.insert("service", vec!["redis"]);
        assert_eq!(tags(&map), "service=redis version=1,2");
        assert_eq!(tags(&BTreeMap::<&str, Vec<&str>>::new()), "");
    }
}
