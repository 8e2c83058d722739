//! OAuth 2.0 client credentials (RFC 6749 §4.4): the token request a subscription's
//! credentials make, and what the token endpoint's answer means. No I/O: the delivery use
//! case sends the request through the address guard and keeps the token.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use super::subscription::{ClientAuthMethod, EndpointAuth};
use super::time::Timestamp;

/// How long the token endpoint may take, apart from the endpoint's own timeout.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(5);
/// A token is fetched again this long before it expires (or at half its life, if shorter),
/// so that no delivery goes out with a token about to lapse in flight.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The life assumed for a token whose answer gives no `expires_in`: short, since a 401
/// fetches a new one anyway.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest a token is kept, whatever its `expires_in` says.
pub const MAX_KEPT: Duration = Duration::from_secs(24 * 3600);
/// The longest access token taken: it goes into every request's headers.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The request for a token: a form POST with the client's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The token request of `auth`, when it is OAuth client credentials.
pub fn token_request(auth: &EndpointAuth) -> Option<TokenRequest> {
    let EndpointAuth::OAuth2ClientCredentials {
        token_url,
        client_id,
        client_secret,
        scope,
        audience,
        client_auth,
    } = auth
    else {
        return None;
    };
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = audience {
        form.append_pair("audience", audience);
    }
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    match client_auth {
        ClientAuthMethod::ClientSecretBasic => {
            // RFC 6749 §2.3.1: each part form-encoded before they are joined, so a `:` in
            // the id cannot move the split.
            let encode = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            let pair: String = [encode(client_id), encode(client_secret)].join(":");
            headers.push((
                "authorization".to_string(),
                format!("Basic {}", STANDARD.encode(pair)),
            ));
        }
        ClientAuthMethod::ClientSecretPost => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", client_secret);
        }
    }
    Some(TokenRequest {
        url: token_url.clone(),
        headers,
        body: form.finish(),
    })
}

/// A token and when to fetch the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub value: String,
    pub refresh_at: Timestamp,
}

impl AccessToken {
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.refresh_at
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// What the token endpoint's answer gives, or why it gives no usable token (for the
/// attempt's log: the endpoint's error code and description, never the request).
pub fn read_token_answer(status: u16, body: &str, now: Timestamp) -> Result<AccessToken, String> {
    if !(200..300).contains(&status) {
        // RFC 6749 §5.2: `{"error": "invalid_client", "error_description": "..."}`.
        let detail = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?.as_str()?.to_string();
                Some(match v.get("error_description").and_then(|d| d.as_str()) {
                    Some(d) => format!("{error}: {d}"),
                    None => error,
                })
            })
            .unwrap_or_else(|| "no OAuth error in the answer".to_string());
        return Err(format!(
            "the token endpoint answered {status} ({})",
            clip(&detail)
        ));
    }
    let answer: TokenAnswer = serde_json::from_str(body)
        .map_err(|e| format!("the token endpoint's answer is not a token: {e}"))?;
    if let Some(kind) = &answer.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "the token endpoint gave a `{}` token; only bearer tokens are sent",
                clip(kind)
            ));
        }
    }
    let token = answer.access_token;
    // It goes into a header: visible ASCII only, so it can neither break the request nor
    // be refused by the HTTP client at every attempt.
    if token.is_empty()
        || token.len() > MAX_TOKEN_BYTES
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "the token endpoint's access_token is empty, over {MAX_TOKEN_BYTES} bytes, or \
             not printable ASCII"
        ));
    }
    // A number, or a numeric string as some servers send it.
    let lifetime = match answer.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_LIFETIME,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Duration::from_secs)
            .ok_or("the token endpoint's expires_in is not a number of seconds")?,
    }
    .min(MAX_KEPT);
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    Ok(AccessToken {
        value: token,
        refresh_at: now + (lifetime - margin),
    })
}

/// At most 200 characters of text from the token endpoint.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(method: ClientAuthMethod) -> EndpointAuth {
        EndpointAuth::OAuth2ClientCredentials {
            token_url: "https://idp.example.com/oauth/token".into(),
            client_id: "crm:client".into(),
            client_secret: "s3cr&t".into(),
            scope: Some("events:write read".into()),
            audience: Some("https://crm.example.com".into()),
            client_auth: method,
        }
    }

    #[test]
    fn the_request_is_a_form_with_the_secret_in_basic_or_in_the_body() {
        let basic = token_request(&oauth(ClientAuthMethod::ClientSecretBasic)).unwrap();
        assert_eq!(basic.url, "https://idp.example.com/oauth/token");
        assert_eq!(
            basic.body,
            "grant_type=client_credentials&scope=events%3Awrite+read\
             &audience=https%3A%2F%2Fcrm.example.com"
        );
        let authorization = &basic
            .headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        let decoded = STANDARD
            .decode(authorization.strip_prefix("Basic ").unwrap())
            .unwrap();
        // The id's `:` is encoded, so the receiver splits at the right place.
        assert_eq!(decoded, b"crm%3Aclient:s3cr%26t");

        let post = token_request(&oauth(ClientAuthMethod::ClientSecretPost)).unwrap();
        assert!(post.headers.iter().all(|(n, _)| n != "authorization"));
        assert!(post
            .body
            .ends_with("&client_id=crm%3Aclient&client_secret=s3cr%26t"));
        assert_eq!(
            token_request(&EndpointAuth::Bearer { token: "t".into() }),
            None
        );
    }

    #[test]
    fn a_token_is_refreshed_a_minute_before_it_expires_or_at_half_its_life() {
        let now = Timestamp::from_millis(1_000_000);
        let read = |body: &str| read_token_answer(200, body, now);
        let token =
            read(r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#).unwrap();
        assert_eq!(token.value, "abc");
        assert_eq!(token.refresh_at, now + Duration::from_secs(3540));
        assert!(token.is_fresh(now + Duration::from_secs(3539)));
        assert!(!token.is_fresh(now + Duration::from_secs(3540)));
        let short = read(r#"{"access_token":"abc","token_type":"bearer","expires_in":"30"}"#);
        assert_eq!(short.unwrap().refresh_at, now + Duration::from_secs(15));
        let unsaid = read(r#"{"access_token":"abc"}"#).unwrap();
        assert_eq!(unsaid.refresh_at, now + DEFAULT_LIFETIME - REFRESH_MARGIN);
        let forever = read(r#"{"access_token":"abc","expires_in":99999999}"#).unwrap();
        assert_eq!(forever.refresh_at, now + MAX_KEPT - REFRESH_MARGIN);
        // Used for the request at hand only.
        let zero = read(r#"{"access_token":"abc","expires_in":0}"#).unwrap();
        assert!(!zero.is_fresh(now));
    }

    #[test]
    fn an_unusable_answer_says_why() {
        let now = Timestamp::EPOCH;
        let error = read_token_answer(
            401,
            r#"{"error":"invalid_client","error_description":"bad secret"}"#,
            now,
        )
        .unwrap_err();
        assert_eq!(
            error,
            "the token endpoint answered 401 (invalid_client: bad secret)"
        );
        assert!(read_token_answer(500, "<html>", now)
            .unwrap_err()
            .contains("answered 500"));
        for body in [
            "not json",
            r#"{"token_type":"bearer"}"#,
            r#"{"access_token":"","token_type":"bearer"}"#,
            r#"{"access_token":"a b"}"#,
            "{\"access_token\":\"a\\r\\nX-Injected: 1\"}",
            r#"{"access_token":"abc","token_type":"mac"}"#,
            r#"{"access_token":"abc","expires_in":"soon"}"#,
        ] {
            assert!(read_token_answer(200, body, now).is_err(), "{body}");
        }
    }
}
