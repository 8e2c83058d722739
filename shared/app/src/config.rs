//! Reading settings from environment variables, with one strictness for every process: a
//! variable that is set but unreadable stops the start with its name and the reason,
//! never silently becomes a default. The Lambda functions and the local runner read the
//! same names (the runner through its flags' `env`).

use std::str::FromStr;

use crate::{Error, Result};

/// Variables the functions once read under other names: still setting one is refused, so a
/// stale configuration cannot be ignored without a word.
const RENAMED: &[(&str, &str)] = &[
    ("DELIVER_CONCURRENCY", "WEBHOOKS_SEND_CONCURRENCY"),
    (
        "MAX_IN_FLIGHT_PER_SUBSCRIPTION",
        "WEBHOOKS_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
    ),
    (
        "AUTO_DISABLE_AFTER_SECONDS",
        "WEBHOOKS_AUTO_DISABLE_AFTER_SECONDS",
    ),
];

/// A source of variables: the process environment, or a map in tests.
pub struct Vars<F>(F);

impl Vars<fn(&str) -> Option<String>> {
    pub fn from_env() -> Self {
        Vars(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub fn new(lookup: F) -> Self {
        Vars(lookup)
    }

    /// The value, when set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &str) -> Result<String> {
        self.get(name)
            .ok_or_else(|| Error::Config(format!("{name} is not set")))
    }

    /// The parsed value, or `default` when unset.
    pub fn parsed<T>(&self, name: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| Error::Config(format!("{name}={v:?}: {e}"))),
        }
    }

    /// A count that must be at least 1.
    pub fn positive(&self, name: &str, default: u64) -> Result<u64> {
        match self.parsed(name, default)? {
            0 => Err(Error::Config(format!("{name} must be at least 1"))),
            n => Ok(n),
        }
    }

    /// A switch, spelt as the runner's flags accept it.
    pub fn flag(&self, name: &str) -> Result<bool> {
        let Some(v) = self.get(name) else {
            return Ok(false);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "1" => Ok(true),
            "false" | "no" | "n" | "off" | "0" => Ok(false),
            _ => Err(Error::Config(format!(
                "{name}={v:?}: expected true or false"
            ))),
        }
    }

    /// A comma-separated list, each item parsed.
    pub fn list<T>(&self, name: &str) -> Result<Vec<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let Some(v) = self.get(name) else {
            return Ok(Vec::new());
        };
        v.split(',')
            .map(|item| {
                item.trim()
                    .parse()
                    .map_err(|e| Error::Config(format!("{name}: {item:?}: {e}")))
            })
            .collect()
    }

    /// Refuses variables that were renamed.
    pub fn refuse_renamed(&self) -> Result<()> {
        for (old, new) in RENAMED {
            if self.get(old).is_some() {
                return Err(Error::Config(format!("{old} is now called {new}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Vars::new(move |name| map.get(name).cloned())
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_never_a_default() {
        let v = vars(&[
            ("N", "ten"),
            ("Z", "0"),
            ("F", "maybe"),
            ("L", "10.0.0.0/8, x"),
        ]);
        let err = v.parsed::<u64>("N", 10).unwrap_err().to_string();
        assert!(err.contains("N=\"ten\""), "{err}");
        assert!(v.positive("Z", 10).unwrap_err().to_string().contains("Z"));
        assert!(v.flag("F").is_err());
        assert!(v.list::<ipnet::IpNet>("L").is_err());
        assert!(v.required("MISSING").is_err());
    }

    #[test]
    fn unset_or_empty_takes_the_default() {
        let v = vars(&[
            ("EMPTY", ""),
            ("ON", "TRUE"),
            ("L", "10.0.0.0/8,127.0.0.0/8"),
        ]);
        assert_eq!(v.positive("EMPTY", 7).unwrap(), 7);
        assert_eq!(v.positive("UNSET", 7).unwrap(), 7);
        assert!(!v.flag("UNSET").unwrap());
        assert!(v.flag("ON").unwrap());
        assert_eq!(v.list::<ipnet::IpNet>("L").unwrap().len(), 2);
    }

    #[test]
    fn a_renamed_variable_is_refused_with_its_new_name() {
        let err = vars(&[("DELIVER_CONCURRENCY", "10")])
            .refuse_renamed()
            .unwrap_err()
            .to_string();
        assert!(err.contains("WEBHOOKS_SEND_CONCURRENCY"), "{err}");
        assert!(vars(&[]).refuse_renamed().is_ok());
    }
}
