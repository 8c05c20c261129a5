//! Query-string parsing with errors that name the parameter.

use std::collections::HashMap;

use super::ApiError;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

pub struct Params(HashMap<String, String>);

impl Params {
    /// Accepts only the `allowed` names, so a typo is an error, not a silent no-op.
    pub fn new(raw: HashMap<String, String>, allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = raw.keys().find(|k| !allowed.contains(&k.as_str())) {
            let name: String = unknown.chars().take(64).collect();
            return Err(ApiError::bad(&name, format!("unknown parameter; accepted: {}", allowed.join(", "))));
        }
        Ok(Params(raw))
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.0.get(name) else { return Ok(None) };
        let value: i64 = text.parse().map_err(|_| ApiError::bad(name, "expected an integer"))?;
        if value < min || value > max {
            return Err(ApiError::bad(name, format!("must be between {min} and {max}")));
        }
        Ok(Some(value))
    }

    pub fn limit(&self) -> Result<i64, ApiError> {
        Ok(self.int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT))
    }

    pub fn text(&self, name: &str, max_len: usize) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            Some(t) if t.len() > max_len => Err(ApiError::bad(name, format!("longer than {max_len} characters"))),
            other => Ok(other.map(String::as_str)),
        }
    }
}

/// A path id: a positive integer.
pub fn path_id(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| ApiError::bad(name, "expected a non-negative integer"))
}
