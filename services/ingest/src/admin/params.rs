//! Query parameters of the admin endpoints: unknown names and malformed values are refused with
//! `BAD_REQUEST` naming the parameter.

use std::collections::HashMap;

use shared::http::{ApiError, ApiResult};

/// The query of one request.
#[derive(Debug)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Check that every parameter is one of `known`.
    pub fn new(query: HashMap<String, String>, known: &[&str]) -> ApiResult<Self> {
        if let Some(unknown) = query.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!(
                "Unknown parameter '{unknown}': expected one of {}",
                known.join(", ")
            )));
        }
        Ok(Self(query))
    }

    /// A non-empty text parameter.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0
            .remove(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A non-negative integer parameter.
    pub fn int(&mut self, name: &str) -> ApiResult<Option<i64>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid {name} '{v}': expected a non-negative integer"
                    ))
                }),
        }
    }

    /// `limit`, 1..=`max`, `default` when absent.
    pub fn limit(&mut self, default: u32, max: u32) -> ApiResult<u32> {
        match self.int("limit")? {
            None => Ok(default),
            Some(n) if (1..=i64::from(max)).contains(&n) => Ok(n as u32),
            Some(n) => Err(ApiError::bad_request(format!(
                "Invalid limit {n}: between 1 and {max}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_names_and_bad_numbers_are_refused() {
        assert!(Params::new(params(&[("nope", "1")]), &["limit"]).is_err());
        let mut p = Params::new(params(&[("limit", "0")]), &["limit"]).unwrap();
        assert!(p.limit(50, 200).is_err());
        let mut p = Params::new(params(&[("limit", "-3")]), &["limit"]).unwrap();
        assert!(p.limit(50, 200).is_err());
        let mut p = Params::new(params(&[("limit", "7")]), &["limit"]).unwrap();
        assert_eq!(p.limit(50, 200).unwrap(), 7);
        let mut p = Params::new(params(&[]), &["limit"]).unwrap();
        assert_eq!(p.limit(50, 200).unwrap(), 50);
    }
}
