//! A recording proxy in front of moto: a function pointed at it (`AWS_ENDPOINT_URL`) has
//! every AWS request it makes forwarded unchanged and noted as the IAM action it needs and
//! the resource it names, so a test can hold the calls against the function's policy.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

/// What a call names, as the request carries it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AwsResource {
    /// A DynamoDB table, or one of its indexes.
    Table {
        name: String,
        index: Option<String>,
    },
    Queue {
        url: String,
    },
    Parameter {
        name: String,
    },
    /// An SES send, by the address it is sent from.
    EmailFrom {
        address: String,
    },
}

/// One AWS call: the IAM action it is authorised by (`dynamodb:PutItem`; a batch action
/// of SQS is authorised by its single one) and what it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AwsCall {
    pub action: String,
    pub resource: AwsResource,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<BTreeSet<AwsCall>>>,
    unread: Arc<Mutex<Vec<String>>>,
}

/// A proxy to moto that records the calls made through it.
pub struct AwsRecorder {
    pub url: String,
    calls: Arc<Mutex<BTreeSet<AwsCall>>>,
    unread: Arc<Mutex<Vec<String>>>,
}

impl AwsRecorder {
    pub async fn start(upstream: &str) -> AwsRecorder {
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            calls: Arc::default(),
            unread: Arc::default(),
        };
        let (calls, unread) = (proxy.calls.clone(), proxy.unread.clone());
        let app = Router::new().fallback(forward).with_state(proxy);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        AwsRecorder {
            url: format!("http://{addr}"),
            calls,
            unread,
        }
    }

    /// Every distinct call so far.
    pub fn calls(&self) -> BTreeSet<AwsCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Requests the recorder could not name an action for: a test fails on any, since an
    /// unread call is an unchecked one.
    pub fn unread(&self) -> Vec<String> {
        self.unread.lock().unwrap().clone()
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    match read_calls(&parts.method, parts.uri.path(), &parts.headers, &body) {
        Some(calls) => proxy.calls.lock().unwrap().extend(calls),
        None => proxy.unread.lock().unwrap().push(format!(
            "{} {} {:?}",
            parts.method,
            parts.uri,
            parts.headers.get("x-amz-target")
        )),
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut upstream = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        // The client sets its own host and length; asking for no compression keeps the
        // body that comes back the one moto sent.
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "accept-encoding" | "connection"
        ) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            headers.append(name, value.clone());
        }
    }
    let bytes: Bytes = answer.bytes().await.unwrap_or_default();
    (status, headers, bytes).into_response()
}

/// The calls one request makes; `None` when it is not one this recorder can read.
fn read_calls(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Vec<AwsCall>> {
    if method == Method::POST && path == "/v2/email/outbound-emails" {
        let body: Value = serde_json::from_slice(body).ok()?;
        let address = body["FromEmailAddress"].as_str()?.to_string();
        return Some(vec![AwsCall {
            action: "ses:SendEmail".into(),
            resource: AwsResource::EmailFrom { address },
        }]);
    }
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let (service, operation) = target.split_once('.')?;
    let body: Value = serde_json::from_slice(body).ok()?;
    let call = |action: String, resource: AwsResource| AwsCall { action, resource };
    match service {
        s if s.starts_with("DynamoDB_") => {
            let table = |name: &str, index: Option<&str>| AwsResource::Table {
                name: name.to_string(),
                index: index.map(String::from),
            };
            let action = format!("dynamodb:{operation}");
            match operation {
                "BatchWriteItem" | "BatchGetItem" => Some(
                    body["RequestItems"]
                        .as_object()?
                        .keys()
                        .map(|name| call(action.clone(), table(name, None)))
                        .collect(),
                ),
                // Each item of a transaction is authorised as its own single write.
                "TransactWriteItems" => body["TransactItems"]
                    .as_array()?
                    .iter()
                    .map(|item| {
                        let (kind, inner) = item.as_object()?.iter().next()?;
                        let single = match kind.as_str() {
                            "Put" => "PutItem",
                            "Update" => "UpdateItem",
                            "Delete" => "DeleteItem",
                            "ConditionCheck" => "ConditionCheckItem",
                            _ => return None,
                        };
                        Some(call(
                            format!("dynamodb:{single}"),
                            table(inner["TableName"].as_str()?, None),
                        ))
                    })
                    .collect(),
                _ => Some(vec![call(
                    action,
                    table(body["TableName"].as_str()?, body["IndexName"].as_str()),
                )]),
            }
        }
        "AmazonSQS" => {
            let single = operation.strip_suffix("Batch").unwrap_or(operation);
            let url = body["QueueUrl"].as_str()?.to_string();
            Some(vec![call(
                format!("sqs:{single}"),
                AwsResource::Queue { url },
            )])
        }
        "AmazonSSM" => Some(vec![call(
            format!("ssm:{operation}"),
            AwsResource::Parameter {
                name: body["Name"].as_str()?.to_string(),
            },
        )]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-amz-target", t.parse().unwrap());
        h
    }

    #[test]
    fn batch_actions_are_read_as_the_actions_iam_checks() {
        let calls = read_calls(
            &Method::POST,
            "/",
            &target("AmazonSQS.SendMessageBatch"),
            br#"{"QueueUrl":"http://q/1/deliveries","Entries":[]}"#,
        )
        .unwrap();
        assert_eq!(calls[0].action, "sqs:SendMessage");
        let calls = read_calls(
            &Method::POST,
            "/",
            &target("DynamoDB_20120810.TransactWriteItems"),
            br#"{"TransactItems":[{"Put":{"TableName":"a"}},{"ConditionCheck":{"TableName":"b"}}]}"#,
        )
        .unwrap();
        assert_eq!(calls[0].action, "dynamodb:PutItem");
        assert_eq!(calls[1].action, "dynamodb:ConditionCheckItem");
        let calls = read_calls(
            &Method::POST,
            "/",
            &target("DynamoDB_20120810.Query"),
            br#"{"TableName":"t","IndexName":"by_status"}"#,
        )
        .unwrap();
        assert_eq!(
            calls[0].resource,
            AwsResource::Table {
                name: "t".into(),
                index: Some("by_status".into())
            }
        );
        assert!(read_calls(&Method::GET, "/", &HeaderMap::new(), b"").is_none());
    }
}
