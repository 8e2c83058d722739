//! `template.yaml` against the code: the queues and the functions' event sources must be
//! what `app::topology` says (the embedded runner and the AWS provisioning are built from
//! it), and every variable the template sets must be one the functions read.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use app::topology::{self, ConsumerSpec, QueueSpec};
use yaml_rust2::Yaml;

use e2e::template::{self as tpl, resources, strings};

fn template() -> Yaml {
    tpl::load()
}

/// The logical id of the queue `webhooks-${Stage}-<name>`.
fn queue_resource<'a>(t: &'a Yaml, name: &str) -> (String, &'a Yaml) {
    let wanted = format!("webhooks-${{Stage}}-{name}");
    resources(t)
        .into_iter()
        .find(|(_, r)| {
            r["Type"].as_str() == Some("AWS::SQS::Queue")
                && r["Properties"]["QueueName"].as_str() == Some(&wanted)
        })
        .unwrap_or_else(|| panic!("no queue named {wanted} in the template"))
}

fn secs(y: &Yaml) -> Option<Duration> {
    y.as_i64().map(|s| Duration::from_secs(s as u64))
}

fn check_queue(t: &Yaml, spec: QueueSpec) {
    let (_, q) = queue_resource(t, spec.name);
    let p = &q["Properties"];
    // SQS's default visibility timeout is 30 s.
    let visibility = secs(&p["VisibilityTimeout"]).unwrap_or(Duration::from_secs(30));
    assert_eq!(
        visibility, spec.visibility,
        "{}: VisibilityTimeout",
        spec.name
    );
    assert_eq!(
        secs(&p["MessageRetentionPeriod"]),
        Some(spec.retention),
        "{}: MessageRetentionPeriod",
        spec.name
    );
    // Set, not left to SQS's default: the classic one (256 KiB) is what older queues have.
    assert_eq!(
        p["MaximumMessageSize"].as_i64(),
        Some(spec.max_message_bytes as i64),
        "{}: MaximumMessageSize",
        spec.name
    );
    let redrive = &p["RedrivePolicy"];
    match (spec.dead_letter, spec.max_receives) {
        (Some(dlq), Some(max)) => {
            assert_eq!(
                redrive["maxReceiveCount"].as_i64(),
                Some(max as i64),
                "{}: maxReceiveCount",
                spec.name
            );
            let (dlq_id, _) = queue_resource(t, dlq);
            assert_eq!(
                redrive["deadLetterTargetArn"].as_str(),
                Some(format!("{dlq_id}.Arn").as_str()),
                "{}: deadLetterTargetArn",
                spec.name
            );
        }
        _ => assert!(
            redrive.is_badvalue(),
            "{}: unexpected RedrivePolicy",
            spec.name
        ),
    }
}

fn check_consumer(t: &Yaml, spec: ConsumerSpec) {
    let (queue_id, _) = queue_resource(t, spec.queue);
    let queue_arn = format!("{queue_id}.Arn");
    let mut found = Vec::new();
    for (id, r) in resources(t) {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(events) = r["Properties"]["Events"].as_hash() else {
            continue;
        };
        for source in events.values() {
            if source["Type"].as_str() == Some("SQS")
                && source["Properties"]["Queue"].as_str() == Some(&queue_arn)
            {
                found.push((id.clone(), r, &source["Properties"]));
            }
        }
    }
    assert_eq!(found.len(), 1, "{}: one consumer expected", spec.queue);
    let (id, function, source) = found.remove(0);
    assert_eq!(
        source["BatchSize"].as_i64(),
        Some(spec.batch_size as i64),
        "{id}: BatchSize"
    );
    assert_eq!(
        source["ScalingConfig"]["MaximumConcurrency"].as_i64(),
        Some(spec.max_concurrency as i64),
        "{id}: MaximumConcurrency"
    );
    assert!(
        source["FunctionResponseTypes"].as_vec().is_some_and(|v| v
            .iter()
            .any(|t| t.as_str() == Some("ReportBatchItemFailures"))),
        "{id}: without ReportBatchItemFailures one failure retries the whole batch"
    );
    assert_eq!(
        secs(&function["Properties"]["Timeout"]),
        Some(spec.function_timeout),
        "{id}: Timeout"
    );
    // Measured (BENCHMARKS.md, Lambda sizing): a window would add its length to deliveries'
    // latency at low traffic to save cents per million.
    assert!(
        source["MaximumBatchingWindowInSeconds"].is_badvalue(),
        "{id}: a batching window"
    );
}

#[test]
fn the_queues_are_the_topology() {
    let t = template();
    for spec in topology::QUEUES {
        check_queue(&t, spec);
    }
    let declared = resources(&t)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::Queue"))
        .count();
    assert_eq!(
        declared,
        topology::QUEUES.len(),
        "a queue outside the topology"
    );
}

#[test]
fn the_event_sources_are_the_topology() {
    let t = template();
    for spec in topology::CONSUMERS {
        check_consumer(&t, spec);
    }
}

/// What the functions read: the settings (`app::Settings::from_vars`) and the resource
/// names (`store_aws::Resources::from_vars`), found by reading with a recording lookup.
fn variables_read() -> HashSet<String> {
    let read = std::sync::Mutex::new(HashSet::new());
    let vars = app::config::Vars::new(|name: &str| {
        // Every variable set, to a value each reader accepts; old names stay unset (a
        // template still setting one must fail below, as the function would at start).
        let value = match name {
            "DELIVER_CONCURRENCY"
            | "MAX_IN_FLIGHT_PER_SUBSCRIPTION"
            | "AUTO_DISABLE_AFTER_SECONDS" => return None,
            "WEBHOOKS_ALLOWED_CIDRS" => "10.0.0.0/8",
            "WEBHOOKS_EGRESS_IPS" => "203.0.113.1",
            n if n.contains("ALLOW") => "false",
            _ => "1",
        };
        read.lock().unwrap().insert(name.to_string());
        Some(value.to_string())
    });
    app::Settings::from_vars(&vars).unwrap();
    store_aws::Resources::from_vars(&vars).unwrap();
    read.into_inner().unwrap()
}

#[test]
fn every_variable_the_template_sets_is_one_the_functions_read() {
    let t = template();
    let read = variables_read();
    let mut set: HashMap<String, String> = HashMap::new();
    let globals = t["Globals"]["Function"]["Environment"]["Variables"].as_hash();
    for (name, _) in globals.into_iter().flatten() {
        set.insert(name.as_str().unwrap().into(), "Globals".into());
    }
    for (id, r) in resources(&t) {
        let vars = r["Properties"]["Environment"]["Variables"].as_hash();
        for (name, _) in vars.into_iter().flatten() {
            set.insert(name.as_str().unwrap().into(), id.clone());
        }
    }
    assert!(set.contains_key("WEBHOOKS_SEND_CONCURRENCY"), "{set:?}");
    for (name, place) in &set {
        assert!(
            read.contains(name),
            "{place} sets {name}, which no function reads: a typo or a stale name"
        );
    }
}

#[test]
fn a_delivery_row_outlives_every_message_of_it() {
    let t = template();
    let min_days = t["Parameters"]["EventRetentionDays"]["MinValue"]
        .as_i64()
        .expect("EventRetentionDays has a MinValue");
    assert!(
        Duration::from_secs(min_days as u64 * 86_400) >= topology::RETENTION,
        "a retention of {min_days} days lets a delivery's row expire while its message still retries"
    );
}

/// The api-keys table as `store_aws::provision` creates it (partition `key_hash`, an index
/// by account and key id, which listing and revoking query) is the template's.
#[test]
fn the_api_keys_table_is_the_provisioned_one() {
    let t = template();
    let (_, table) = resources(&t)
        .into_iter()
        .find(|(_, r)| r["Properties"]["TableName"].as_str() == Some("webhooks-${Stage}-api-keys"))
        .expect("an api-keys table");
    let p = &table["Properties"];
    let keys = |schema: &Yaml| -> Vec<(String, String)> {
        schema
            .as_vec()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_string(),
                    k["KeyType"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |name: &str, kind: &str| (name.to_string(), kind.to_string());
    assert_eq!(keys(&p["KeySchema"]), [pair("key_hash", "HASH")]);
    let indexes = p["GlobalSecondaryIndexes"].as_vec().expect("indexes");
    assert_eq!(indexes.len(), 1);
    let index = &indexes[0];
    assert_eq!(
        index["IndexName"].as_str(),
        Some(store_aws::API_KEYS_BY_ACCOUNT_INDEX)
    );
    assert_eq!(
        keys(&index["KeySchema"]),
        [pair("account_id", "HASH"), pair("id", "RANGE")]
    );
    assert_eq!(index["Projection"]["ProjectionType"].as_str(), Some("ALL"));
    let mut defined: Vec<_> = p["AttributeDefinitions"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_string(),
                a["AttributeType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    defined.sort();
    assert_eq!(
        defined,
        [
            pair("account_id", "S"),
            pair("id", "S"),
            pair("key_hash", "S")
        ]
    );
}

/// The sealing key's parameter, as the template names it.
const SEALING_KEY_PARAMETER: &str = "/webhooks-${Stage}/sealing-key";

#[test]
fn only_the_functions_that_read_or_write_secrets_can_reach_the_sealing_key() {
    let t = template();
    let arn = format!(
        "arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{SEALING_KEY_PARAMETER}"
    );
    // In Globals, every function would be told the name.
    assert!(
        t["Globals"]["Function"]["Environment"]["Variables"]["SEALING_KEY_PARAMETER"].is_badvalue(),
        "SEALING_KEY_PARAMETER is set for every function"
    );
    let (mut readers, mut told) = (Vec::new(), Vec::new());
    for (id, r) in resources(&t) {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let conditions = every_condition(&t, true);
        let allows = |action: &str| tpl::function_allows(&t, &id, &conditions, action, &arn, &[]);
        if allows("ssm:GetParameter") {
            readers.push(id.clone());
        }
        // The api seals the first secret (a subscription's), so it alone creates the key.
        assert_eq!(allows("ssm:PutParameter"), id == "ApiFunction", "{id}");
        let name = &r["Properties"]["Environment"]["Variables"]["SEALING_KEY_PARAMETER"];
        if !name.is_badvalue() {
            assert_eq!(name.as_str(), Some(SEALING_KEY_PARAMETER), "{id}");
            told.push(id);
        }
    }
    readers.sort();
    told.sort();
    assert_eq!(readers, ["ApiFunction", "DeliverFunction"]);
    assert_eq!(told, readers);
}

/// Each of the template's conditions, with one value.
fn every_condition(t: &Yaml, value: bool) -> HashMap<&str, bool> {
    t["Conditions"]
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| (k.as_str().unwrap(), value))
        .collect()
}

/// Alert e-mail goes out from fan-out only, and only as the configured sender: no other
/// function can send e-mail, and fan-out cannot send as anyone else.
#[test]
fn only_fanout_sends_alert_email_and_only_as_the_configured_sender() {
    let t = template();
    for id in tpl::functions(&t) {
        let (_, role) = tpl::role_of(&t, &id);
        let policies = format!("{:?}", role["Properties"]["Policies"]);
        let sends = policies.contains("ses:SendEmail");
        assert_eq!(sends, id == "FanoutFunction", "{id}: {policies}");
        if sends {
            assert!(policies.contains("ses:FromAddress"), "{policies}");
            assert!(policies.contains("AlertSender"), "{policies}");
            assert!(policies.contains("HasAlertSender"), "{policies}");
        }
    }
    let fanout = &t["Resources"]["FanoutFunction"]["Properties"];
    let schedule = format!("{:?}", fanout["Events"]["AlertDigests"]);
    assert!(schedule.contains("Schedule"), "{schedule}");
}

/// The tables and queues hold customer data: deleting the stack, or a change that would
/// replace one, must keep them; the tables also refuse a delete outright.
#[test]
fn customer_data_survives_the_stack() {
    let t = template();
    let mut seen = 0;
    for (id, r) in resources(&t) {
        let kind = r["Type"].as_str().unwrap_or_default();
        if kind != "AWS::DynamoDB::Table" && kind != "AWS::SQS::Queue" {
            continue;
        }
        seen += 1;
        assert_eq!(r["DeletionPolicy"].as_str(), Some("Retain"), "{id}");
        assert_eq!(r["UpdateReplacePolicy"].as_str(), Some("Retain"), "{id}");
        if kind == "AWS::DynamoDB::Table" {
            assert_eq!(
                r["Properties"]["DeletionProtectionEnabled"].as_bool(),
                Some(true),
                "{id}"
            );
        }
    }
    assert_eq!(seen, 9, "four tables and five queues");
}

/// Every alarm notifies the alert topic, and that topic is encrypted with a key whose
/// policy lets CloudWatch use it (the AWS-managed `alias/aws/sns` key cannot).
#[test]
fn every_alarm_can_publish_to_its_topic() {
    let t = template();
    let topic = &t["Resources"]["AlertTopic"]["Properties"];
    let key_id = topic["KmsMasterKeyId"].as_str().unwrap();
    assert_ne!(key_id, "alias/aws/sns");
    let key = &t["Resources"][key_id];
    assert_eq!(key["Type"].as_str(), Some("AWS::KMS::Key"), "{key_id}");
    let grants_cloudwatch = key["Properties"]["KeyPolicy"]["Statement"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|s| {
            let actions = strings(&s["Action"]);
            s["Effect"].as_str() == Some("Allow")
                && s["Principal"]["Service"].as_str() == Some("cloudwatch.amazonaws.com")
                && actions.iter().any(|a| a == "kms:Decrypt")
                && actions.iter().any(|a| a == "kms:GenerateDataKey*")
        });
    assert!(
        grants_cloudwatch,
        "the key's policy does not let CloudWatch use it"
    );
    let alarms: Vec<_> = resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .collect();
    assert!(alarms.len() >= 10, "{}", alarms.len());
    for (id, alarm) in alarms {
        assert_eq!(
            strings(&alarm["Properties"]["AlarmActions"]),
            ["AlertTopic"],
            "{id} notifies nobody"
        );
    }
}

/// A dead-letter queue's alarm fires on growth: one on "not empty" would stay red from the
/// first dead letter until someone empties the queue, hiding every later one.
#[test]
fn dead_letter_alarms_fire_on_growth_not_on_a_reviewed_queue() {
    let t = template();
    let dead_letter_queues = ["EventsDeadLetterQueue", "DeliveriesDeadLetterQueue"];
    for (id, alarm) in resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
    {
        let p = &alarm["Properties"];
        let on_queue = |metric: &Yaml| {
            metric["Dimensions"]
                .as_vec()
                .into_iter()
                .flatten()
                .filter_map(|d| d["Value"].as_str())
                .any(|v| {
                    dead_letter_queues
                        .iter()
                        .any(|q| v == format!("{q}.QueueName"))
                })
        };
        assert!(!on_queue(p), "{id} alarms on a dead-letter queue's level");
        let Some(metrics) = p["Metrics"].as_vec() else {
            continue;
        };
        if metrics.iter().any(|m| on_queue(&m["MetricStat"]["Metric"])) {
            let expression = metrics
                .iter()
                .find_map(|m| m["Expression"].as_str())
                .unwrap_or_default();
            assert!(expression.starts_with("DIFF(FILL("), "{id}: {expression}");
        }
    }
    for queue in dead_letter_queues {
        let watched = resources(&t).into_iter().any(|(_, r)| {
            r["Properties"]["Metrics"]
                .as_vec()
                .into_iter()
                .flatten()
                .filter_map(|m| m["MetricStat"]["Metric"]["Dimensions"].as_vec())
                .flatten()
                .any(|d| d["Value"].as_str() == Some(&format!("{queue}.QueueName")))
        });
        assert!(watched, "no alarm watches {queue}");
    }
}

/// SQS moves a message to the safety net only after more receives than any delivery's
/// attempt budget, with room for throttles and whole-batch failures; and every queue
/// hides a received message for at least six times its consumer's timeout.
#[test]
fn queues_leave_room_beyond_the_attempts_and_the_timeouts() {
    let t = template();
    let (_, deliveries) = queue_resource(&t, topology::DELIVERIES.name);
    let max_receives = deliveries["Properties"]["RedrivePolicy"]["maxReceiveCount"]
        .as_i64()
        .unwrap();
    assert!(
        max_receives >= domain::subscription::MAX_ATTEMPTS_LIMIT as i64 + 5,
        "maxReceiveCount {max_receives}"
    );
    for (id, function) in resources(&t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
    {
        let timeout = secs(&function["Properties"]["Timeout"]).unwrap();
        for source in function["Properties"]["Events"]
            .as_hash()
            .into_iter()
            .flat_map(|e| e.values())
            .filter(|s| s["Type"].as_str() == Some("SQS"))
        {
            let arn = source["Properties"]["Queue"].as_str().unwrap();
            let queue = &t["Resources"][arn.trim_end_matches(".Arn")];
            let visibility = secs(&queue["Properties"]["VisibilityTimeout"]).unwrap();
            assert!(visibility >= timeout * 6, "{id} on {arn}: {visibility:?}");
        }
    }
}

/// The "deliveries stuck" alarm reads a metric the deliver function writes.
#[test]
fn the_stuck_alarm_reads_the_deliver_functions_lag() {
    let t = template();
    let alarm = &t["Resources"]["DeliveriesStuckAlarm"]["Properties"];
    let metric = alarm["MetricName"].as_str().unwrap();
    assert_eq!(alarm["Namespace"].as_str(), Some(app::metrics::NAMESPACE));
    let written = app::metrics::DeliveryMetrics {
        succeeded: 1,
        latencies_ms: vec![3],
        attempt_numbers: vec![1],
        first_try_lags_ms: vec![12],
        ..Default::default()
    }
    .emf("prod", 0);
    let line: serde_json::Value = serde_json::from_str(&written).unwrap();
    let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
    assert!(
        declared.contains(&format!("\"{metric}\"")),
        "{metric} is not in {declared}"
    );
}

/// Static egress exists only when asked for: every network resource is under the
/// `HasStaticEgress` condition, api and deliver join the private subnets only then, and
/// the addresses reach the api (which publishes them) and the outputs.
#[test]
fn static_egress_is_built_only_under_its_condition() {
    let t = template();
    assert_eq!(
        t["Parameters"]["StaticEgressIps"]["Default"].as_str(),
        Some("false")
    );
    let network: Vec<_> = resources(&t)
        .into_iter()
        .filter(|(_, r)| {
            r["Type"]
                .as_str()
                .is_some_and(|k| k.starts_with("AWS::EC2::"))
        })
        .collect();
    let kinds: HashSet<&str> = network
        .iter()
        .filter_map(|(_, r)| r["Type"].as_str())
        .collect();
    for kind in [
        "AWS::EC2::VPC",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::VPCEndpoint",
        "AWS::EC2::Subnet",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
    for (id, r) in &network {
        assert_eq!(r["Condition"].as_str(), Some("HasStaticEgress"), "{id}");
    }
    let nat_zones: HashSet<String> = network
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::EC2::NatGateway"))
        .map(|(_, r)| r["Properties"]["SubnetId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nat_zones.len(), 2, "a NAT gateway in each of two zones");
    let endpoint = network
        .iter()
        .find(|(_, r)| r["Type"].as_str() == Some("AWS::EC2::VPCEndpoint"))
        .unwrap();
    assert!(endpoint.1["Properties"]["ServiceName"]
        .as_str()
        .unwrap()
        .ends_with(".dynamodb"));
    for function in ["ApiFunction", "DeliverFunction"] {
        let vpc = t["Resources"][function]["Properties"]["VpcConfig"]
            .as_vec()
            .unwrap_or_else(|| panic!("{function}: VpcConfig is not conditional"));
        assert_eq!(vpc[0].as_str(), Some("HasStaticEgress"), "{function}");
        assert_eq!(vpc[2].as_str(), Some("AWS::NoValue"), "{function}");
    }
    for function in ["IngestFunction", "FanoutFunction"] {
        assert!(
            t["Resources"][function]["Properties"]["VpcConfig"].is_badvalue(),
            "{function} sends nothing to endpoints"
        );
    }
    let published = &t["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
        ["WEBHOOKS_EGRESS_IPS"];
    assert_eq!(published[0].as_str(), Some("HasStaticEgress"));
    assert_eq!(
        t["Outputs"]["EgressIps"]["Condition"].as_str(),
        Some("HasStaticEgress")
    );
}

/// Each function runs with a role of its own, written out in the template: no SAM policy
/// (whose SQS one allows receive and delete on every queue of the account), no wildcard
/// action or resource, and the VPC access policy only where and when a function joins
/// the VPC. What each role allows is checked against recorded calls by `least_privilege`.
#[test]
fn every_function_has_a_role_of_its_own_and_no_wildcard() {
    let t = template();
    let mut roles = HashSet::new();
    for id in tpl::functions(&t) {
        let function = &t["Resources"][id.as_str()]["Properties"];
        assert!(
            function["Policies"].is_badvalue(),
            "{id}: SAM policies beside its role"
        );
        let (role_id, role) = tpl::role_of(&t, &id);
        assert!(roles.insert(role_id.clone()), "{role_id} is shared");
        let trust = format!("{:?}", role["Properties"]["AssumeRolePolicyDocument"]);
        assert!(trust.contains("lambda.amazonaws.com"), "{role_id}: {trust}");
        for egress in [false, true] {
            let conditions = every_condition(&t, egress);
            for grant in tpl::grants(&t, &id, &conditions) {
                assert!(
                    !grant.actions.iter().any(|a| a == "*" || a.ends_with(":*")),
                    "{role_id}: {grant:?}"
                );
                assert!(
                    !grant.resources.iter().any(|r| r == "*"),
                    "{role_id}: {grant:?}"
                );
            }
            let managed = tpl::managed_policies(&t, &id, &conditions);
            let in_vpc = egress && matches!(id.as_str(), "ApiFunction" | "DeliverFunction");
            if in_vpc {
                assert_eq!(managed.len(), 1, "{role_id}: {managed:?}");
                assert!(
                    managed[0].ends_with("/AWSLambdaVPCAccessExecutionRole"),
                    "{managed:?}"
                );
            } else {
                assert!(
                    managed.is_empty(),
                    "{role_id} with egress {egress}: {managed:?}"
                );
            }
        }
    }
}

/// The deliver function's reserved concurrency covers every poller of its own and its
/// sweep, so that none of its invocations is throttled by the account's other functions
/// (a throttled batch goes back to the queue and spends a receive toward the dead letters).
#[test]
fn the_deliver_function_reserves_room_for_all_its_pollers() {
    let t = template();
    let deliver = &t["Resources"]["DeliverFunction"]["Properties"];
    let mut needed = 0;
    for (_, source) in deliver["Events"].as_hash().unwrap() {
        needed += match source["Type"].as_str() {
            Some("SQS") => source["Properties"]["ScalingConfig"]["MaximumConcurrency"]
                .as_i64()
                .expect("a maximum concurrency on each queue source"),
            _ => 1,
        };
    }
    let reserved = &deliver["ReservedConcurrentExecutions"];
    assert_eq!(reserved[0].as_str(), Some("HasDeliverReservation"));
    assert_eq!(reserved[1].as_str(), Some("DeliverReservedConcurrency"));
    let parameter = &t["Parameters"]["DeliverReservedConcurrency"];
    let default: i64 = parameter["Default"].as_str().unwrap().parse().unwrap();
    assert!(default >= needed, "{default} reserved for {needed} pollers");
    // The pattern admits 0 (no reservation) and every value from `needed` on, nothing between.
    let pattern = parameter["AllowedPattern"].as_str().unwrap();
    assert_eq!(needed, 53, "the pattern {pattern} is written for 53");
    assert_eq!(pattern, "^(0|5[3-9]|[6-9][0-9]|[1-9][0-9]{2,})$");
}
