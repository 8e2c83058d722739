//! An account's alert settings: who gets alert e-mail, for which operational events, and
//! the account's own `webhook.failing` threshold (see `app::alerts`).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, JsonBody};
use app::Services;
use domain::alerts::{AlertSettings, MAX_ALERT_EMAILS, MAX_FAILING_AFTER_FAILURES};
use domain::catalog::OPERATIONAL;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAlerts {
    /// Where alert e-mail goes (plain `name@example.com` addresses); empty: no e-mail.
    #[schema(max_items = 10)]
    pub emails: Vec<String>,
    /// Which operational events are e-mailed (`webhook.failing`, `webhook.recovered`,
    /// `webhook.disabled`, `delivery.dead`); default all of them.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Failed attempts in a row that make an endpoint `failing` for this account (1–1000);
    /// null: the deployment's threshold.
    #[serde(default)]
    pub failing_after_failures: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsView {
    pub emails: Vec<String>,
    pub events: Vec<String>,
    /// The account's own threshold, if it set one.
    pub failing_after_failures: Option<u32>,
    /// The threshold in force: the account's own, or the deployment's.
    pub effective_failing_after_failures: u32,
    /// The deployment's threshold, in force when the account sets none.
    pub default_failing_after_failures: u32,
    /// Whether this deployment sends e-mail at all (an SMTP server or an SES sender is
    /// configured). When false, settings are kept but nothing is sent.
    pub email_sending: bool,
    /// At most one e-mail per endpoint and cause in this many seconds; a digest counts
    /// the rest.
    pub throttle_seconds: u64,
}

fn view(services: &Services, settings: AlertSettings) -> AlertsView {
    AlertsView {
        effective_failing_after_failures: settings
            .failing_after_failures
            .unwrap_or(services.settings.failing_after_failures),
        default_failing_after_failures: services.settings.failing_after_failures,
        emails: settings.emails,
        events: settings.events,
        failing_after_failures: settings.failing_after_failures,
        email_sending: services.settings.alert_sender.is_some(),
        throttle_seconds: domain::alerts::THROTTLE_WINDOW.as_secs(),
    }
}

/// The account's alert settings; an account that never saved any has no address and
/// every operational event chosen.
#[utoipa::path(get, path = "/v1/accounts/{account_id}/alerts", tag = "alerts",
    params(("account_id" = String, Path)),
    responses((status = 200, body = AlertsView), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_alerts(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
) -> Result<Json<AlertsView>, ApiError> {
    let account = caller.account(&account_id)?;
    let settings = services
        .alerts
        .settings(&account)
        .await?
        .unwrap_or_default();
    Ok(Json(view(&services, settings)))
}

/// Replaces the account's alert settings.
#[utoipa::path(put, path = "/v1/accounts/{account_id}/alerts", tag = "alerts",
    params(("account_id" = String, Path)), request_body = PutAlerts,
    responses((status = 200, body = AlertsView), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_alerts(
    State(services): State<Services>,
    caller: Caller,
    Path(account_id): Path<String>,
    JsonBody(req): JsonBody<PutAlerts>,
) -> Result<Json<AlertsView>, ApiError> {
    let account = caller.account(&account_id)?;
    let settings = AlertSettings {
        emails: req.emails.iter().map(|e| e.trim().to_string()).collect(),
        events: req
            .events
            .unwrap_or_else(|| OPERATIONAL.iter().map(|s| s.to_string()).collect()),
        failing_after_failures: req.failing_after_failures,
    };
    let mut violations = Vec::new();
    settings.check(&mut violations);
    if !violations.is_empty() {
        return Err(ApiError::validation(violations));
    }
    services.alerts.put_settings(&account, &settings).await?;
    Ok(Json(view(&services, settings)))
}

// Kept in step with the schema annotations above.
const _: () = assert!(MAX_ALERT_EMAILS == 10 && MAX_FAILING_AFTER_FAILURES == 1000);
