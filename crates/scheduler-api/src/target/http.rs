//! The `http` target: a request to a path on a configured endpoint, with what answer counts as
//! success.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Origin, TargetData, check_address};

pub(super) const TAG: &str = "http";

/// An HTTP request to `path` on the endpoint, carrying the `Idempotency-Key` and
/// `X-Scheduled-Time` headers; an answer outside `expected_status` is a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Value,
    #[serde(default = "default_expected_status")]
    pub expected_status: String,
}

fn default_method() -> String {
    "POST".to_string()
}

fn default_expected_status() -> String {
    "2xx".to_string()
}

impl TargetData for HttpTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn lasts(&self) -> bool {
        true
    }

    fn validate(&self, origin: Origin) -> Result<(), String> {
        check_address(TAG, self.endpoint.as_deref(), self.url.as_deref(), origin)?;
        http_method(&self.method)?;
        let path = &self.path;
        if !path.is_empty() && !path.starts_with('/') {
            return Err(format!("target.path must start with '/', got '{path}'"));
        }
        for (name, value) in &self.headers {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(format!("target.headers: '{name}' is not a header name"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("target.headers.{name} holds a line break"));
            }
        }
        ExpectedStatus::parse(&self.expected_status).map(drop)
    }
}

/// The HTTP methods an `http` target may use.
pub fn http_method(method: &str) -> Result<&'static str, String> {
    const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    METHODS
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .ok_or_else(|| {
            format!(
                "target.method '{method}' is not one of {}",
                METHODS.join(", ")
            )
        })
}

/// Which answers of an `http` target count as success: a class (`"2xx"`) or one status
/// (`"204"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedStatus {
    Class(u16),
    Exactly(u16),
}

impl ExpectedStatus {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "target.expected_status must be a status class such as \"2xx\" or one status \
                 such as \"204\", got '{text}'"
            )
        };
        let text = text.trim();
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            return match class.as_bytes() {
                [digit @ b'1'..=b'5'] => Ok(ExpectedStatus::Class(u16::from(digit - b'0'))),
                _ => Err(bad()),
            };
        }
        match text.parse::<u16>() {
            Ok(code @ 100..=599) => Ok(ExpectedStatus::Exactly(code)),
            _ => Err(bad()),
        }
    }

    pub fn accepts(self, status: u16) -> bool {
        match self {
            ExpectedStatus::Class(class) => status / 100 == class,
            ExpectedStatus::Exactly(code) => status == code,
        }
    }
}

impl std::fmt::Display for ExpectedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedStatus::Class(class) => write!(f, "{class}xx"),
            ExpectedStatus::Exactly(code) => write!(f, "{code}"),
        }
    }
}
