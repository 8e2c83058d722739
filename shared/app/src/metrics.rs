//! Delivery metrics as CloudWatch Embedded Metric Format: one JSON log line per batch that
//! CloudWatch turns into metrics. Ids are never dimensions (unbounded cardinality costs
//! money and says nothing an alarm can use); the only dimension is the stage.

use std::io::Write;

use serde_json::{json, Map, Value};

pub const NAMESPACE: &str = "Webhooks";

/// What one batch of deliveries came to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeliveryMetrics {
    pub succeeded: u32,
    /// Ended without success and without retry (410 Gone, refused destination).
    pub failed: u32,
    pub retried: u32,
    pub dead: u32,
    pub skipped: u32,
    /// Latency of every attempt made, in milliseconds.
    pub latencies_ms: Vec<u64>,
    /// The attempt number of every attempt made (1 for first tries).
    pub attempt_numbers: Vec<u32>,
    /// How long after fan-out sent it each first try was made, in milliseconds: the
    /// "deliveries stuck" alarm's metric (`DeliveryLag`).
    pub first_try_lags_ms: Vec<u64>,
}

impl DeliveryMetrics {
    pub fn is_empty(&self) -> bool {
        *self == DeliveryMetrics::default()
    }

    /// Writes the EMF line straight to stdout, which Lambda sends to CloudWatch Logs.
    /// Deliberately not a `tracing` event: metrics are not logs, and a log level raised to
    /// quieten a noisy function must never silence its alarms.
    pub fn publish(&self, stage: &str, timestamp_ms: i64) {
        if self.is_empty() {
            return;
        }
        let mut line = self.emf(stage, timestamp_ms);
        line.push('\n');
        // One write of the whole line, so concurrent batches never interleave inside one.
        if let Err(e) = std::io::stdout().lock().write_all(line.as_bytes()) {
            tracing::error!(error = %e, "could not write a metrics line");
        }
    }

    /// The EMF line for `stage` at `timestamp_ms`.
    pub fn emf(&self, stage: &str, timestamp_ms: i64) -> String {
        let counts = [
            ("DeliverySucceeded", self.succeeded),
            ("DeliveryFailed", self.failed),
            ("DeliveryRetried", self.retried),
            ("DeliveryDead", self.dead),
            ("DeliverySkipped", self.skipped),
        ];
        let mut definitions: Vec<Value> = counts
            .iter()
            .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
            .collect();
        definitions.push(json!({"Name": "DeliveryLatency", "Unit": "Milliseconds"}));
        definitions.push(json!({"Name": "DeliveryAttempt", "Unit": "Count"}));
        if !self.first_try_lags_ms.is_empty() {
            definitions.push(json!({"Name": "DeliveryLag", "Unit": "Milliseconds"}));
        }
        let mut line = Map::new();
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Stage"]],
                    "Metrics": definitions,
                }]
            }),
        );
        line.insert("Stage".into(), json!(stage));
        for (name, value) in counts {
            line.insert(name.into(), json!(value));
        }
        // EMF takes up to 100 values per metric in one line; a batch has at most 10.
        line.insert("DeliveryLatency".into(), json!(self.latencies_ms));
        line.insert("DeliveryAttempt".into(), json!(self.attempt_numbers));
        if !self.first_try_lags_ms.is_empty() {
            line.insert("DeliveryLag".into(), json!(self.first_try_lags_ms));
        }
        Value::Object(line).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_without_ids() {
        let m = DeliveryMetrics {
            succeeded: 2,
            dead: 1,
            latencies_ms: vec![3, 9, 12],
            attempt_numbers: vec![1, 1, 8],
            first_try_lags_ms: vec![40, 1_200],
            ..Default::default()
        };
        let line: Value = serde_json::from_str(&m.emf("prod", 1_700_000_000_000)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Webhooks");
        assert_eq!(directive["Dimensions"], json!([["Stage"]]));
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(line.get(name).is_some(), "{name} declared but missing");
        }
        assert_eq!(line["Stage"], "prod");
        assert_eq!(line["DeliverySucceeded"], 2);
        assert_eq!(line["DeliveryDead"], 1);
        assert_eq!(line["DeliveryLatency"], json!([3, 9, 12]));
        assert_eq!(line["DeliveryLag"], json!([40, 1_200]));
        // A batch of retries only has no lag to report, and declares none.
        let retries = DeliveryMetrics {
            retried: 1,
            latencies_ms: vec![5],
            attempt_numbers: vec![2],
            ..Default::default()
        };
        let retries_line: Value = serde_json::from_str(&retries.emf("prod", 0)).unwrap();
        assert!(retries_line.get("DeliveryLag").is_none());
        let names = retries_line["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(!names.contains("DeliveryLag"), "{names}");
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert!(DeliveryMetrics::default().is_empty());
    }
}
