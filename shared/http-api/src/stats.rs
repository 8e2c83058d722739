//! Stats of an account or of one of its webhooks: totals, a time series and the failures
//! grouped by cause, read from the pre-aggregated slots (`domain::stats`).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::Caller;
use super::webhooks::{load, parse_webhook_id};
use app::Services;
use domain::ids::{AccountId, SubscriptionId};
use domain::schema::Violation;
use domain::stats::{parse_window, SlotStats, StatsPlan, StatsReport};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// `90m`, `24h`, `7d`… up to `30d`; default `24h`.
    pub window: Option<String>,
    /// The series' bucket: a whole number of 5-minute slots up to `1d` (`5m`, `15m`, `1h`,
    /// `6h`, `1d`), at most a week of 5-minute buckets. Default: `5m` up to 2 h, `1h` up to 2 days, `6h`
    /// up to 7 days, `1d` beyond.
    pub bucket: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Latency {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
}

impl Latency {
    fn of(stats: &SlotStats) -> Self {
        Latency {
            p50: stats.latency.percentile(50.0),
            p95: stats.latency.percentile(95.0),
            p99: stats.latency.percentile(99.0),
        }
    }
}

/// Outcomes of one bucket of the series.
#[derive(Serialize, ToSchema)]
pub struct Bucket {
    /// The bucket's start, RFC 3339.
    pub start: String,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    /// Of the bucket's attempts; within 6 % (a histogram), exact below 16 ms.
    pub latency_ms: Latency,
}

/// The failures of one cause.
#[derive(Serialize, ToSchema)]
pub struct ErrorGroup {
    /// `http_<status>`, `timeout`, `connection_refused`, `tls`, `dns`, `blocked_address`
    /// (the address guard refused the destination) or `connection` (any other network
    /// failure).
    pub cause: String,
    /// Failed attempts of this cause in the window.
    pub count: u64,
    pub last_seen: String,
    /// The most recent deliveries that failed so (at most 3), to open in the inspector.
    pub example_delivery_ids: Vec<String>,
}

/// One webhook's totals in an account's stats.
#[derive(Serialize, ToSchema)]
pub struct WebhookTotals {
    pub webhook_id: String,
    pub succeeded: u64,
    pub failed: u64,
    pub dead: u64,
    pub success_rate: Option<f64>,
}

/// What happened in a window, counted when it happened.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub window: String,
    pub bucket: String,
    /// The first bucket's start: the window's start rounded down to a bucket.
    pub since: String,
    pub until: String,
    /// `succeeded` and `failed` count attempts (a delivery that failed twice then succeeded
    /// is 2 failed and 1 succeeded); `dead` counts deliveries whose last attempt spent their
    /// budget.
    #[schema(value_type = Object)]
    pub counts: BTreeMap<&'static str, u64>,
    /// Attempts: succeeded + failed.
    pub total: u64,
    /// Succeeded attempts over all attempts; null before any.
    pub success_rate: Option<f64>,
    /// Of every attempt in the window, in milliseconds.
    pub latency_ms: Latency,
    /// Every bucket of the window, empty ones included, oldest first.
    pub series: Vec<Bucket>,
    /// Failures by cause, the most frequent first.
    pub errors: Vec<ErrorGroup>,
    /// Per webhook, in the account's stats only (webhooks deleted since included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<WebhookTotals>>,
}

fn bad_parameter(parameter: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![Violation {
        pointer: format!("/{parameter}"),
        message: message.into(),
    }])
}

const DURATION_HELP: &str =
    "must be a number of minutes, hours or days (`90m`, `24h`, `7d`), at most 30 days";

async fn report(
    services: &Services,
    account: &AccountId,
    webhook: Option<&SubscriptionId>,
    q: StatsQuery,
) -> Result<Stats, ApiError> {
    let window = q.window.unwrap_or_else(|| "24h".into());
    let span = parse_window(&window).ok_or_else(|| bad_parameter("window", DURATION_HELP))?;
    let bucket = q
        .bucket
        .as_deref()
        .map(|b| parse_window(b).ok_or_else(|| bad_parameter("bucket", DURATION_HELP)))
        .transpose()?;
    let plan = StatsPlan::new(span, bucket, services.clock.now())
        .map_err(|e| bad_parameter(e.parameter, e.message))?;
    let slots = services
        .deliveries
        .stats_slots(account, webhook, plan.since, plan.grain())
        .await?;
    let report = StatsReport::build(&plan, &slots);
    let totals = &report.totals;
    let mut errors: Vec<ErrorGroup> = totals
        .causes
        .iter()
        .map(|(cause, c)| ErrorGroup {
            cause: cause.key(),
            count: c.count,
            last_seen: c.last_seen.to_rfc3339(),
            example_delivery_ids: c.examples.iter().map(ToString::to_string).collect(),
        })
        .collect();
    errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.cause.cmp(&b.cause)));
    Ok(Stats {
        window,
        bucket: format_duration(plan.bucket),
        since: plan.since.to_rfc3339(),
        until: plan.until.to_rfc3339(),
        counts: BTreeMap::from([
            ("succeeded", totals.succeeded),
            ("failed", totals.failed),
            ("dead", totals.dead),
        ]),
        total: totals.succeeded + totals.failed,
        success_rate: totals.success_rate(),
        latency_ms: Latency::of(totals),
        series: report
            .series
            .iter()
            .map(|(start, b)| Bucket {
                start: start.to_rfc3339(),
                succeeded: b.succeeded,
                failed: b.failed,
                dead: b.dead,
                latency_ms: Latency::of(b),
            })
            .collect(),
        errors,
        webhooks: webhook.is_none().then(|| webhook_totals(&report)),
    })
}

fn webhook_totals(report: &StatsReport) -> Vec<WebhookTotals> {
    report
        .by_subscription
        .iter()
        .map(|(id, s)| WebhookTotals {
            webhook_id: id.to_string(),
            succeeded: s.succeeded,
            failed: s.failed,
            dead: s.dead,
            success_rate: s.success_rate(),
        })
        .collect()
}

/// `1d`, `6h`, `15m`: the largest unit that divides it.
fn format_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{}m", s / 60),
    }
}

/// A webhook's outcomes over a window: totals, a series, and failures grouped by cause.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/webhooks/{webhook_id}/stats", tag = "webhooks",
    params(("account_id" = String, Path), ("webhook_id" = String, Path), StatsQuery),
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn webhook_stats(
    State(services): State<Services>,
    caller: Caller,
    Path((account_id, webhook_id)): Path<(String, String)>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let account = caller.account(&account_id)?;
    let webhook_id = parse_webhook_id(&webhook_id)?;
    load(&services, &account, &webhook_id).await?;
    Ok(Json(
        report(&services, &account, Some(&webhook_id), q).await?,
    ))
}

/// The account's outcomes over a window: totals, a series, failures grouped by cause, and
/// each webhook's totals.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/stats", tag = "stats",
    params(("account_id" = String, Path), StatsQuery),
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn account_stats(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let account = caller.account(&account_id)?;
    Ok(Json(report(&services, &account, None, q).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_back_in_their_largest_unit() {
        for (secs, text) in [
            (300, "5m"),
            (900, "15m"),
            (3600, "1h"),
            (21_600, "6h"),
            (86_400, "1d"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
            assert_eq!(parse_window(text), Some(Duration::from_secs(secs)));
        }
    }
}
