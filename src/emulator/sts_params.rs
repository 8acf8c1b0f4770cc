//! The parameters of an STS query call and their constraints, checked and worded as STS
//! does (AWS STS API reference, `AssumeRole` and `AssumeRoleWithWebIdentity`):
//!
//! - `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`;
//! - `ExternalId`: 2 to 1224 characters of `[\w+=,.@:/-]`;
//! - `DurationSeconds`: 900 to 43200.
//!
//! A missing required parameter answers `ValidationError` "1 validation error detected:
//! Value null at 'roleArn' failed to satisfy constraint: Member must not be null"; the
//! other violations of one call are collected into one `ValidationError`, e.g. "2
//! validation errors detected: Value 'x' at 'roleSessionName' failed to satisfy
//! constraint: Member must have length greater than or equal to 2; Value '10' at
//! 'durationSeconds' ...".

use std::time::Duration;

/// Looks a query parameter up by name (`None` when absent).
pub(crate) type Param<'a> = dyn Fn(&str) -> Option<&'a str> + 'a;

/// The text of a `ValidationError` for a missing (or empty) required parameter `name`.
pub(crate) fn missing(name: &str) -> String {
    format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        member(name)
    )
}

/// A required parameter's value, or the `ValidationError` text naming it.
pub(crate) fn required<'a>(param: &Param<'a>, name: &str) -> Result<&'a str, String> {
    param(name).filter(|v| !v.is_empty()).ok_or_else(|| missing(name))
}

/// The member name STS's messages use for parameter `name` (`roleSessionName`).
pub(crate) fn member(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The constraint violations found in one call's parameters.
#[derive(Debug, Default)]
pub(crate) struct Violations(Vec<String>);

impl Violations {
    fn add(&mut self, name: &str, value: &str, constraint: &str) {
        self.0.push(format!("Value '{value}' at '{}' failed to satisfy constraint: Member {constraint}", member(name)));
    }

    /// Checks `RoleSessionName`.
    pub fn session_name(&mut self, value: &str) {
        if let Some(c) = text_constraint(value, 2, 64, "[\\w+=,.@-]*", "+=,.@-") {
            self.add("RoleSessionName", value, &c);
        }
    }

    /// Checks `ExternalId`, if sent.
    pub fn external_id(&mut self, value: Option<&str>) {
        let Some(value) = value else { return };
        if let Some(c) = text_constraint(value, 2, 1224, "[\\w+=,.@:\\/-]*", "+=,.@:/-") {
            self.add("ExternalId", value, &c);
        }
    }

    /// Checks `DurationSeconds`, if sent, and returns it (`None` when absent or invalid).
    pub fn duration_seconds(&mut self, value: Option<&str>) -> Option<Duration> {
        let text = value?;
        match text.parse::<u64>() {
            Ok(secs) if (900..=43_200).contains(&secs) => Some(Duration::from_secs(secs)),
            _ => {
                self.add("DurationSeconds", text, "must have value between 900 and 43200");
                None
            }
        }
    }

    /// `Ok` without violations, else the `ValidationError` text listing them all.
    pub fn into_result(self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(format!("1 validation error detected: {}", self.0[0])),
            n => Err(format!("{n} validation errors detected: {}", self.0.join("; "))),
        }
    }
}

/// The constraint `value` breaks: a length outside `min..=max` characters, or a
/// character that is neither a word character (`\w`: ASCII letters, digits, `_`) nor
/// one of `extra` (`pattern` is how STS writes the rule).
fn text_constraint(value: &str, min: usize, max: usize, pattern: &str, extra: &str) -> Option<String> {
    let len = value.chars().count();
    if len < min {
        Some(format!("must have length greater than or equal to {min}"))
    } else if len > max {
        Some(format!("must have length less than or equal to {max}"))
    } else if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c)) {
        Some(format!("must satisfy regular expression pattern: {pattern}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &str) -> Result<(), String> {
        let mut v = Violations::default();
        v.session_name(name);
        v.into_result()
    }

    #[test]
    fn session_names_follow_sts_constraints() {
        for ok in ["ab", "ads-export-operator", "a_b+c=d,e.f@g-h", &"x".repeat(64)] {
            assert_eq!(session(ok), Ok(()), "{ok:?}");
        }
        let short = session("x").unwrap_err();
        assert_eq!(
            short,
            "1 validation error detected: Value 'x' at 'roleSessionName' failed to satisfy constraint: \
             Member must have length greater than or equal to 2"
        );
        assert!(session(&"x".repeat(65)).unwrap_err().contains("less than or equal to 64"));
        for bad in ["a b", "a/b", "a:b", "é-é"] {
            assert!(session(bad).unwrap_err().contains("pattern: [\\w+=,.@-]*"), "{bad:?}");
        }
    }

    #[test]
    fn external_ids_and_durations_and_several_violations() {
        let mut v = Violations::default();
        v.external_id(Some("tenant:42/a"));
        v.external_id(None);
        assert_eq!(v.duration_seconds(Some("900")), Some(Duration::from_secs(900)));
        assert_eq!(v.duration_seconds(None), None);
        assert_eq!(v.into_result(), Ok(()));

        let mut v = Violations::default();
        v.session_name("s");
        v.external_id(Some("a b"));
        assert_eq!(v.duration_seconds(Some("10")), None);
        let all = v.into_result().unwrap_err();
        assert!(all.starts_with("3 validation errors detected: Value 's' at 'roleSessionName'"), "{all}");
        assert!(all.contains("; Value 'a b' at 'externalId' failed to satisfy constraint: Member must satisfy"));
        assert!(all.contains("at 'durationSeconds' failed to satisfy constraint: Member must have value between 900"));
    }

    #[test]
    fn missing_parameters_are_named() {
        let param = |name: &str| (name == "RoleArn").then_some("arn:aws:iam::111111111111:role/a");
        assert_eq!(required(&param, "RoleArn"), Ok("arn:aws:iam::111111111111:role/a"));
        let err = required(&param, "RoleSessionName").unwrap_err();
        assert!(err.contains("Value null at 'roleSessionName'"), "{err}");
        assert_eq!(member("ExternalId"), "externalId");
    }
}
