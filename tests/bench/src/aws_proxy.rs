//! A counting reverse proxy between the AWS SDK and a moto server. Every request goes to
//! moto unchanged and moto's answer comes back unchanged; on the way the proxy counts the
//! calls by operation (the `x-amz-target` header of the SQS and DynamoDB JSON protocols)
//! and works out what AWS would bill for each:
//!
//! - SQS: one request per 64 KiB chunk of payload; receives that returned nothing are kept
//!   apart (long-poll idling, not work).
//! - DynamoDB on demand: write request units from the item sizes (1 per KiB, rounded up,
//!   per item, on the larger of the item before and after), plus the writes every global
//!   secondary index needs; read request units from the sizes read (1 per 4 KiB, rounded up,
//!   halved when eventually consistent). Moto does not report consumed capacity, so the proxy
//!   keeps its own copy of every item written through it (a shadow table) to know sizes
//!   before and after an update, and learns the tables' keys and indexes from `CreateTable`.
//!
//! One liberty with "unchanged": calls on one queue go to moto one at a time, and a long
//! poll is carried out by the proxy as short polls (see `Gate`), because moto's queues are
//! not safe under concurrent calls. Each SDK call is still one call, counted once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{Map, Value};

type Attrs = Map<String, Value>;

const KIB: usize = 1024;
const SQS_CHUNK: usize = 64 * KIB;

/// What the calls since the last reset would be billed.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// "SQS SendMessageBatch · events" → calls (empty receives excluded).
    pub calls: BTreeMap<String, u64>,
    /// The same keys → billed SQS requests, or DynamoDB write / read request units.
    pub sqs_requests: BTreeMap<String, u64>,
    pub wru: BTreeMap<String, f64>,
    pub rru: BTreeMap<String, f64>,
    /// Of `wru`, what global secondary indexes cost.
    pub gsi_wru: f64,
    /// Queue → (receives that returned messages, messages received).
    pub batches: BTreeMap<String, (u64, u64)>,
    /// Receives that returned nothing, and their billed requests.
    pub empty_receives: u64,
    /// Calls that were neither SQS nor DynamoDB JSON operations.
    pub unknown: u64,
    /// Operation → answers that were server errors (moto's own failures, retried by the SDK).
    pub server_errors: BTreeMap<String, u64>,
}

impl Ledger {
    pub fn sqs_total(&self) -> u64 {
        self.sqs_requests.values().sum()
    }
    pub fn wru_total(&self) -> f64 {
        self.wru.values().sum()
    }
    pub fn rru_total(&self) -> f64 {
        self.rru.values().sum()
    }
}

#[derive(Debug, Clone)]
enum Projection {
    All,
    KeysOnly,
    Include(Vec<String>),
}

#[derive(Debug, Clone)]
struct Index {
    key: Vec<String>,
    projection: Projection,
}

#[derive(Debug, Clone, Default)]
struct Schema {
    key: Vec<String>,
    indexes: Vec<Index>,
}

#[derive(Default)]
struct Shadow {
    schemas: HashMap<String, Schema>,
    /// table → canonical key → item.
    items: HashMap<String, HashMap<String, Attrs>>,
}

struct Inner {
    ledger: Ledger,
    shadow: Shadow,
    last_work: Instant,
}

#[derive(Clone)]
pub struct AwsProxy {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

struct Upstream {
    base: String,
    http: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
    /// Resource names start with this; it is cut off in the ledger's keys.
    prefix: String,
    /// Queue name → its gate.
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

impl AwsProxy {
    /// Listens on a free loopback port and forwards to `upstream` (moto's base URL).
    pub async fn start(upstream: &str, prefix: &str) -> Result<AwsProxy, String> {
        let inner = Arc::new(Mutex::new(Inner {
            ledger: Ledger::default(),
            shadow: Shadow::default(),
            last_work: Instant::now(),
        }));
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(128)
                .build()
                .map_err(|e| e.to_string())?,
            inner: inner.clone(),
            prefix: prefix.to_string(),
            gates: Mutex::new(HashMap::new()),
        });
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AwsProxy { addr, inner })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets the calls so far (provisioning, setup); the shadow tables stay.
    pub fn reset(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.ledger = Ledger::default();
        inner.last_work = Instant::now();
    }

    pub fn ledger(&self) -> Ledger {
        self.inner.lock().unwrap().ledger.clone()
    }

    /// When the last call other than an empty receive was answered.
    pub fn last_work(&self) -> Instant {
        self.inner.lock().unwrap().last_work
    }

    /// Bytes the tables whose names end with one of `tables` (after the prefix) would store:
    /// (table items, global secondary index entries), each with DynamoDB's 100-byte
    /// per-item overhead.
    /// The bytes of the items `keep` accepts of the table named `…-{table}`, as a read
    /// of them is billed.
    pub fn item_bytes(&self, table: &str, keep: impl Fn(&Attrs) -> bool) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .shadow
            .items
            .iter()
            .filter(|(name, _)| name.ends_with(&format!("-{table}")))
            .flat_map(|(_, items)| items.values())
            .filter(|item| keep(item))
            .map(item_size)
            .sum()
    }

    pub fn stored_bytes(&self, tables: &[&str]) -> (usize, usize) {
        let inner = self.inner.lock().unwrap();
        let (mut table_bytes, mut index_bytes) = (0, 0);
        for (table, items) in &inner.shadow.items {
            if !tables.iter().any(|t| table.ends_with(&format!("-{t}"))) {
                continue;
            }
            let schema = inner.shadow.schemas.get(table).cloned().unwrap_or_default();
            for item in items.values() {
                table_bytes += item_size(item) + 100;
                for index in &schema.indexes {
                    if in_index(item, index) {
                        index_bytes += index_entry_size(item, &schema, index) + 100;
                    }
                }
            }
        }
        (table_bytes, index_bytes)
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
];

fn copy_headers(from: &HeaderMap) -> HeaderMap {
    let mut to = HeaderMap::new();
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
    to
}

/// Moto runs each request on its own thread without locking a queue, so concurrent calls on
/// one queue can hand a message out twice or fail half-way (a receive that marked messages
/// in flight and then answered 500 hides them for the whole visibility timeout). The proxy
/// therefore runs one call at a time per queue, and does the long polling itself with short
/// polls, woken by the sends it forwards. The SDK still makes, and the ledger still counts,
/// exactly one ReceiveMessage per poll, as SQS would bill it.
#[derive(Default)]
struct Gate {
    /// Held for each call forwarded on the queue.
    call: tokio::sync::Mutex<()>,
    /// Held by the receive that is waiting for messages; the others queue behind it.
    poll: tokio::sync::Mutex<()>,
    sent: tokio::sync::Notify,
}

/// How often a waiting receive looks again when no send woke it (delays, visibility).
const REPOLL: Duration = Duration::from_millis(200);

type Answer = (StatusCode, HeaderMap, Bytes);

async fn forward(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let target = parts
        .headers
        .get(HeaderName::from_static("x-amz-target"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let answer = match target.strip_prefix("AmazonSQS.") {
        Some(op) => up.sqs_call(&parts, op, &body).await,
        None => up.send(&parts, body.clone()).await,
    };
    let (status, headers, reply) = match answer {
        Ok(a) => a,
        Err(e) => {
            up.failed(&target, &e);
            return error(StatusCode::BAD_GATEWAY, e);
        }
    };
    up.account(&target, &body, status, &reply);
    let mut response = Response::new(Body::from(reply));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn error(status: StatusCode, message: String) -> Response {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}

fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

impl Upstream {
    /// Forwards one request to moto as it came.
    async fn send(
        &self,
        parts: &axum::http::request::Parts,
        body: Bytes,
    ) -> Result<Answer, String> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let answer = self
            .http
            .request(parts.method.clone(), format!("{}{path}", self.base))
            .headers(copy_headers(&parts.headers))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let headers = copy_headers(answer.headers());
        let reply = answer.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, headers, reply))
    }

    fn gate(&self, queue: &str) -> Arc<Gate> {
        self.gates
            .lock()
            .unwrap()
            .entry(queue.to_string())
            .or_default()
            .clone()
    }

    async fn sqs_call(
        &self,
        parts: &axum::http::request::Parts,
        op: &str,
        body: &Bytes,
    ) -> Result<Answer, String> {
        let request = json(body);
        let Some(queue) = request["QueueUrl"].as_str() else {
            return self.send(parts, body.clone()).await;
        };
        let gate = self.gate(queue.rsplit('/').next().unwrap_or(queue));
        let wait = request["WaitTimeSeconds"].as_u64().unwrap_or(0);
        if op != "ReceiveMessage" || wait == 0 {
            let answer = {
                let _call = gate.call.lock().await;
                self.send(parts, body.clone()).await?
            };
            if answer.0.is_success() && op.starts_with("Send") {
                gate.sent.notify_one();
            }
            return Ok(answer);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        let mut short = request.clone();
        short["WaitTimeSeconds"] = Value::from(0);
        let short = Bytes::from(serde_json::to_vec(&short).map_err(|e| e.to_string())?);
        let _turn = gate.poll.lock().await;
        loop {
            let answer = {
                let _call = gate.call.lock().await;
                self.send(parts, short.clone()).await?
            };
            let got = json(&answer.2)["Messages"]
                .as_array()
                .is_some_and(|m| !m.is_empty());
            let now = tokio::time::Instant::now();
            if got || !answer.0.is_success() || now >= deadline {
                return Ok(answer);
            }
            let _ = tokio::time::timeout(REPOLL.min(deadline - now), gate.sent.notified()).await;
        }
    }

    fn short<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.prefix.as_str()).unwrap_or(name)
    }

    /// A call moto never answered: the SDK sees a 502 and retries it.
    fn failed(&self, target: &str, why: &str) {
        eprintln!("{target}: no answer from moto: {why}");
        *self
            .inner
            .lock()
            .unwrap()
            .ledger
            .server_errors
            .entry(target.to_string())
            .or_default() += 1;
    }

    fn account(&self, target: &str, request: &Bytes, status: StatusCode, reply: &Bytes) {
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        if status.is_server_error() {
            eprintln!("{target}: {status} {}", String::from_utf8_lossy(reply));
            *inner
                .ledger
                .server_errors
                .entry(target.to_string())
                .or_default() += 1;
        }
        if let Some(op) = target.strip_prefix("AmazonSQS.") {
            self.sqs(inner, op, request, reply);
        } else if let Some(op) = target.strip_prefix("DynamoDB_20120810.") {
            self.dynamodb(inner, op, &json(request), status, &json(reply));
            inner.last_work = Instant::now();
        } else {
            inner.ledger.unknown += 1;
        }
    }

    fn sqs(&self, inner: &mut Inner, op: &str, request: &Bytes, reply: &Bytes) {
        let body = json(request);
        let queue = body["QueueUrl"]
            .as_str()
            .and_then(|u| u.rsplit('/').next())
            .or_else(|| body["QueueName"].as_str())
            .map(|q| self.short(q).to_string())
            .unwrap_or_default();
        let billed = request.len().max(reply.len()).div_ceil(SQS_CHUNK).max(1) as u64;
        let ledger = &mut inner.ledger;
        if op == "ReceiveMessage" {
            let received = json(reply)["Messages"].as_array().map_or(0, Vec::len) as u64;
            if received == 0 {
                ledger.empty_receives += 1;
                return;
            }
            let b = ledger.batches.entry(queue.clone()).or_default();
            b.0 += 1;
            b.1 += received;
        }
        let key = format!("SQS {op} · {queue}");
        *ledger.calls.entry(key.clone()).or_default() += 1;
        *ledger.sqs_requests.entry(key).or_default() += billed;
        inner.last_work = Instant::now();
    }

    fn dynamodb(&self, inner: &mut Inner, op: &str, req: &Value, status: StatusCode, out: &Value) {
        let ok = status.is_success();
        let tables: Vec<String> = match req["RequestItems"].as_object() {
            Some(items) => items.keys().cloned().collect(),
            None => req["TableName"]
                .as_str()
                .map(String::from)
                .into_iter()
                .collect(),
        };
        let label = format!(
            "DynamoDB {op} · {}",
            tables
                .iter()
                .map(|t| self.short(t))
                .collect::<Vec<_>>()
                .join("+")
        );
        *inner.ledger.calls.entry(label.clone()).or_default() += 1;
        let shadow = &mut inner.shadow;
        let (mut wru, mut gsi, mut rru) = (0.0, 0.0, 0.0);
        let table = tables.first().cloned().unwrap_or_default();
        match op {
            "CreateTable" if ok => {
                shadow.schemas.insert(table, schema_of(req));
            }
            "DeleteTable" if ok => {
                shadow.schemas.remove(&table);
                shadow.items.remove(&table);
            }
            "PutItem" => {
                let new = req["Item"].as_object().cloned().unwrap_or_default();
                (wru, gsi) = shadow.write(&table, &new, ok, |_| Some(new.clone()));
            }
            "UpdateItem" => {
                let key = req["Key"].as_object().cloned().unwrap_or_default();
                (wru, gsi) = shadow.write(&table, &key, ok, |old| {
                    let mut item = old.cloned().unwrap_or_else(|| key.clone());
                    apply_update(&mut item, req);
                    Some(item)
                });
            }
            "DeleteItem" => {
                let key = req["Key"].as_object().cloned().unwrap_or_default();
                (wru, gsi) = shadow.write(&table, &key, ok, |_| None);
            }
            "BatchWriteItem" if ok => {
                for (table, requests) in req["RequestItems"].as_object().into_iter().flatten() {
                    let unprocessed = out["UnprocessedItems"][table]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    for r in requests.as_array().into_iter().flatten() {
                        if unprocessed.contains(r) {
                            continue;
                        }
                        let (w, g) = if let Some(item) = r["PutRequest"]["Item"].as_object() {
                            shadow.write(table, item, true, |_| Some(item.clone()))
                        } else if let Some(key) = r["DeleteRequest"]["Key"].as_object() {
                            shadow.write(table, key, true, |_| None)
                        } else {
                            (0.0, 0.0)
                        };
                        wru += w;
                        gsi += g;
                    }
                }
            }
            "GetItem" if ok => {
                let size = out["Item"].as_object().map_or(0, item_size);
                rru = read_units(size, req["ConsistentRead"].as_bool() == Some(true));
            }
            "BatchGetItem" if ok => {
                for (table, asked) in req["RequestItems"].as_object().into_iter().flatten() {
                    let consistent = asked["ConsistentRead"].as_bool() == Some(true);
                    let found = out["Responses"][table]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let unprocessed = out["UnprocessedKeys"][table]["Keys"]
                        .as_array()
                        .map_or(0, Vec::len);
                    let missing = asked["Keys"]
                        .as_array()
                        .map_or(0, Vec::len)
                        .saturating_sub(found.len() + unprocessed);
                    rru += found
                        .iter()
                        .map(|i| read_units(i.as_object().map_or(0, item_size), consistent))
                        .sum::<f64>();
                    rru += missing as f64 * read_units(0, consistent);
                }
            }
            "Query" | "Scan" if ok => {
                let items = out["Items"].as_array().cloned().unwrap_or_default();
                let returned: usize = items
                    .iter()
                    .map(|i| i.as_object().map_or(0, item_size))
                    .sum();
                // A filter reads more than it returns: scale by scanned / returned.
                let (count, scanned) = (
                    out["Count"].as_u64().unwrap_or(0),
                    out["ScannedCount"].as_u64().unwrap_or(0),
                );
                let size = if count > 0 && scanned > count {
                    returned * scanned as usize / count as usize
                } else {
                    returned
                };
                let consistent =
                    req["ConsistentRead"].as_bool() == Some(true) && req["IndexName"].is_null();
                rru = read_units(size, consistent);
            }
            _ => {}
        }
        let ledger = &mut inner.ledger;
        if wru > 0.0 {
            *ledger.wru.entry(label.clone()).or_default() += wru;
            ledger.gsi_wru += gsi;
        }
        if rru > 0.0 {
            *ledger.rru.entry(label).or_default() += rru;
        }
    }
}

/// On-demand read request units for `size` bytes read (at least one unit).
fn read_units(size: usize, consistent: bool) -> f64 {
    let units = size.div_ceil(4 * KIB).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

fn write_units(size: usize) -> f64 {
    size.div_ceil(KIB).max(1) as f64
}

fn names(schema: &Value) -> Vec<String> {
    schema
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["AttributeName"].as_str().map(String::from))
        .collect()
}

fn schema_of(req: &Value) -> Schema {
    let indexes = req["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| Index {
            key: names(&i["KeySchema"]),
            projection: match i["Projection"]["ProjectionType"].as_str() {
                Some("KEYS_ONLY") => Projection::KeysOnly,
                Some("INCLUDE") => Projection::Include(
                    i["Projection"]["NonKeyAttributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str().map(String::from))
                        .collect(),
                ),
                _ => Projection::All,
            },
        })
        .collect();
    Schema {
        key: names(&req["KeySchema"]),
        indexes,
    }
}

impl Shadow {
    /// Applies one write to the shadow table (when `ok`) and returns its (write units, of
    /// which for indexes). A refused conditional write still costs the table's units.
    fn write(
        &mut self,
        table: &str,
        keyed: &Attrs,
        ok: bool,
        next: impl FnOnce(Option<&Attrs>) -> Option<Attrs>,
    ) -> (f64, f64) {
        let schema = self.schemas.get(table).cloned().unwrap_or_default();
        let key = canonical_key(keyed, &schema.key);
        let items = self.items.entry(table.to_string()).or_default();
        let old = items.get(&key).cloned();
        let new = next(old.as_ref());
        let size = |i: &Option<Attrs>| i.as_ref().map_or(0, item_size);
        let table_units = write_units(size(&old).max(size(&new)));
        if !ok {
            return (table_units, 0.0);
        }
        let mut index_units = 0.0;
        for index in &schema.indexes {
            let entry = |i: &Option<Attrs>| {
                i.as_ref().filter(|i| in_index(i, index)).map(|i| {
                    (
                        index_entry(i, &schema, index),
                        index_entry_size(i, &schema, index),
                    )
                })
            };
            index_units += match (entry(&old), entry(&new)) {
                (None, None) => 0.0,
                (None, Some((_, size))) | (Some((_, size)), None) => write_units(size),
                (Some((before, b)), Some((after, a))) => {
                    let key_changed = index.key.iter().any(|k| before.get(k) != after.get(k));
                    if key_changed {
                        write_units(b) + write_units(a)
                    } else if before != after {
                        write_units(b.max(a))
                    } else {
                        0.0
                    }
                }
            };
        }
        match new {
            Some(item) => items.insert(key, item),
            None => items.remove(&key),
        };
        (table_units + index_units, index_units)
    }
}

fn canonical_key(item: &Attrs, key: &[String]) -> String {
    key.iter()
        .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("|")
}

fn in_index(item: &Attrs, index: &Index) -> bool {
    index.key.iter().all(|k| item.contains_key(k))
}

/// What an index holds of an item: its keys, the table's keys and the projected attributes.
fn index_entry(item: &Attrs, schema: &Schema, index: &Index) -> Attrs {
    item.iter()
        .filter(|(name, _)| {
            schema.key.contains(name)
                || index.key.contains(name)
                || match &index.projection {
                    Projection::All => true,
                    Projection::KeysOnly => false,
                    Projection::Include(names) => names.contains(name),
                }
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn index_entry_size(item: &Attrs, schema: &Schema, index: &Index) -> usize {
    item_size(&index_entry(item, schema, index))
}

/// DynamoDB's item size: the attribute names' and values' bytes.
pub fn item_size(item: &Attrs) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn number_size(n: &str) -> usize {
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

fn value_size(v: &Value) -> usize {
    let Some((kind, value)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    match kind.as_str() {
        "S" => value.as_str().map_or(0, str::len),
        "N" => value.as_str().map_or(1, number_size),
        "B" => value.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" => strings(value).iter().map(String::len).sum(),
        "NS" => strings(value).iter().map(|n| number_size(n)).sum(),
        "BS" => strings(value).iter().map(|b| b.len() * 3 / 4).sum(),
        "L" => {
            3 + value
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| 1 + value_size(e))
                .sum::<usize>()
        }
        "M" => {
            3 + value
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Splits at `sep` outside parentheses.
fn split_top(text: &str, sep: char) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if c == sep && depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Applies an `UpdateExpression` of the simple forms (`SET a = :v`, `ADD n :one`,
/// `REMOVE a`) to the shadow item. Anything fancier sets the first value it names.
fn apply_update(item: &mut Attrs, req: &Value) {
    let expression = req["UpdateExpression"].as_str().unwrap_or_default();
    let names = &req["ExpressionAttributeNames"];
    let values = &req["ExpressionAttributeValues"];
    let name = |n: &str| -> String {
        let n = n.trim();
        names[n].as_str().map(String::from).unwrap_or(n.to_string())
    };
    let value = |text: &str| -> Option<Value> {
        let placeholder = text
            .split(|c: char| !(c.is_alphanumeric() || c == ':' || c == '_'))
            .find(|t| t.starts_with(':'))?;
        Some(values[placeholder].clone())
    };
    let mut clauses: Vec<(String, String)> = Vec::new();
    for word in expression.split_whitespace() {
        let upper = word.to_ascii_uppercase();
        if matches!(upper.as_str(), "SET" | "REMOVE" | "ADD" | "DELETE") {
            clauses.push((upper, String::new()));
        } else if let Some((_, body)) = clauses.last_mut() {
            body.push_str(word);
            body.push(' ');
        }
    }
    for (clause, body) in clauses {
        for action in split_top(&body, ',') {
            match clause.as_str() {
                "SET" => {
                    if let Some((target, source)) = action.split_once('=') {
                        if let Some(v) = value(source) {
                            item.insert(name(target), v);
                        }
                    }
                }
                "REMOVE" => {
                    item.remove(&name(&action));
                }
                "ADD" => {
                    let Some((target, source)) = action.trim().split_once(' ') else {
                        continue;
                    };
                    let Some(v) = value(source) else { continue };
                    let target = name(target);
                    let sum = match (item.get(&target).map(|o| &o["N"]), &v["N"]) {
                        (Some(Value::String(a)), Value::String(b)) => {
                            match (a.parse::<f64>(), b.parse::<f64>()) {
                                (Ok(a), Ok(b)) => {
                                    serde_json::json!({ "N": format!("{}", a + b) })
                                }
                                _ => v,
                            }
                        }
                        _ => v,
                    };
                    item.insert(target, sum);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Attrs {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        let item = attrs(json!({"pk": {"S": "abc"}, "n": {"N": "12345"}, "b": {"BOOL": true}}));
        assert_eq!(item_size(&item), (2 + 3) + (1 + 4) + (1 + 1));
        assert_eq!(write_units(0), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(10, false), 0.5);
    }

    #[test]
    fn updates_change_the_shadow_item() {
        let mut item = attrs(json!({"pk": {"S": "d"}, "n": {"N": "1"}, "gone": {"S": "x"}}));
        apply_update(
            &mut item,
            &json!({
                "UpdateExpression": "SET #st = :st, other = :o ADD #n :one REMOVE gone",
                "ExpressionAttributeNames": {"#st": "status", "#n": "n"},
                "ExpressionAttributeValues": {":st": {"S": "ok"}, ":o": {"S": "y"}, ":one": {"N": "1"}}
            }),
        );
        assert_eq!(item["status"], json!({"S": "ok"}));
        assert_eq!(item["other"], json!({"S": "y"}));
        assert_eq!(item["n"], json!({"N": "2"}));
        assert!(!item.contains_key("gone"));
    }

    #[test]
    fn index_writes_double_when_the_index_key_changes() {
        let mut shadow = Shadow::default();
        shadow.schemas.insert(
            "t".into(),
            schema_of(&json!({
                "KeySchema": [{"AttributeName": "pk"}],
                "GlobalSecondaryIndexes": [{"KeySchema": [{"AttributeName": "st"}], "Projection": {"ProjectionType": "ALL"}}]
            })),
        );
        let a = attrs(json!({"pk": {"S": "1"}, "st": {"S": "pending"}}));
        assert_eq!(shadow.write("t", &a, true, |_| Some(a.clone())), (2.0, 1.0));
        let b = attrs(json!({"pk": {"S": "1"}, "st": {"S": "done"}}));
        assert_eq!(shadow.write("t", &b, true, |_| Some(b.clone())), (3.0, 2.0));
        assert_eq!(
            shadow.write("t", &b, false, |_| Some(b.clone())),
            (1.0, 0.0)
        );
    }
}
