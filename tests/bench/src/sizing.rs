//! `lambda-sizing`: the release function binaries at the CPU share Lambda gives each
//! memory size, to choose `MemorySize` by measurement. Lambda allocates CPU in proportion
//! to memory, one vCPU at 1 769 MB; here the four processes run in one cgroup per size
//! (their invocations run one at a time) whose CFS quota is that share of one core (a 20 ms period, so a short burst cannot borrow a whole 100 ms
//! slice). As on Lambda, where an on-demand function's init runs on a full vCPU, the quota
//! is set once the process has initialised (its first Runtime API poll). Measured per size
//! against moto: a single-event ingest, a fan-out batch of 10 events to 3 subscriptions
//! each (the account has 10 more for other events, so its events go to the fan-out
//! function), and the deliver batch of the 3 packs it makes (a receiver answering 204);
//! then, batched, a request of
//! 20 events that ingest fans out itself into 3 packs, delivered in one batch of 60: wall
//! time per invocation, the CPU time it took, the peak RSS, and the log bytes each wrote.
//!
//! Moto answers more slowly than DynamoDB and SQS do in-region, so the wall times mostly
//! measure moto; the in-region duration is modelled as the cost scenario's assumed wait on
//! AWS and the endpoint plus the CPU time at the share (an upper bound: they overlap).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use app::ports::Queue;
use e2e::functions::{http_answer, http_event, Function};
use e2e::{Behavior, Receiver};
use serde_json::{json, Value};
use store_aws::SqsQueue;

use crate::cost::Moto;
use crate::report::spread;
use crate::runner::release_binary;

type Res = Result<String, String>;

/// Lambda's documented ratio: one full vCPU at this much memory.
const MB_PER_VCPU: f64 = 1769.0;
// The kernel takes no quota under 1 ms: 128 MB's share of 20 ms is 1.45 ms.
const PERIOD_US: u64 = 20_000;
const SIZES: [u32; 4] = [128, 256, 512, 1024];
const ACCOUNT: &str = "acct_sizing";
/// The price of arm64 Lambda duration, us-east-1.
const GB_SECOND: f64 = 0.000_013_333_4;

/// A cgroup holding its processes to `mb`'s share of one core.
struct CpuCap {
    dir: PathBuf,
    v2: bool,
    /// µs of CPU per period.
    quota: u64,
}

impl CpuCap {
    fn new(mb: u32) -> Result<CpuCap, String> {
        let quota = ((PERIOD_US as f64) * f64::from(mb) / MB_PER_VCPU).round() as u64;
        let name = format!("webhooks-sizing-{}-{mb}", std::process::id());
        // cgroup v2 names the limit `cpu.max`, v1 `cpu.cfs_quota_us`.
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let dir = if v2 {
            PathBuf::from("/sys/fs/cgroup").join(name)
        } else {
            PathBuf::from("/sys/fs/cgroup/cpu").join(name)
        };
        let failed = |e: std::io::Error| {
            format!(
                "cannot make the cgroup {} ({e}): lambda-sizing needs root and a writable \
                 cgroup cpu controller",
                dir.display()
            )
        };
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let cap = CpuCap {
            dir: dir.clone(),
            v2,
            quota,
        };
        // Unlimited until `limit`: init runs on a full core, as Lambda's does.
        cap.write(None).map_err(failed)?;
        Ok(cap)
    }

    fn write(&self, quota: Option<u64>) -> std::io::Result<()> {
        if self.v2 {
            let quota = quota.map_or("max".to_string(), |q| q.to_string());
            std::fs::write(self.dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))
        } else {
            std::fs::write(self.dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
            let quota = quota.map_or("-1".to_string(), |q| q.to_string());
            std::fs::write(self.dir.join("cpu.cfs_quota_us"), quota)
        }
    }

    /// From now on, the processes in it get the size's share of a core.
    fn limit(&self) -> Result<(), String> {
        self.write(Some(self.quota))
            .map_err(|e| format!("setting the CPU quota: {e}"))
    }

    /// `bin`, started inside the cgroup: the shell joins it, then becomes the binary, so
    /// not one instruction of it runs uncapped.
    fn command(&self, bin: &std::path::Path) -> Command {
        let procs = self.dir.join("cgroup.procs");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo $$ > \"$1\" && exec \"$0\"",
            &bin.display().to_string(),
            &procs.display().to_string(),
        ]);
        command
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Empty by now (every process of it was killed); a busy one stays, harmlessly.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// CPU time a process has used, every thread, in ms.
fn cpu_ms(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e6
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A call.ended event of about 1.5 KB, as the realistic cost case has.
fn event(id: &str) -> Value {
    let mut e = e2e::event("call.ended", ACCOUNT, Some(id));
    e["data"]["call_id"] = json!(id);
    e["data"]["summary"] = json!("x".repeat(1200));
    e
}

/// What one size measured: (wall, CPU) medians in ms.
#[derive(Default)]
struct Sized {
    ingest: (f64, f64),
    fanout: (f64, f64),
    deliver: (f64, f64),
    peak_rss: f64,
    /// Log bytes written per delivery, all functions.
    log_bytes: f64,
}

const FUNCTIONS: [&str; 4] = ["ingest", "api", "fanout", "deliver"];

/// Runs a queue's messages through a function as the event source mapping does, `max` at a
/// time; the wall and CPU time of each invocation.
async fn drain(
    queue: &SqsQueue,
    name: &str,
    function: &Function,
    expected: usize,
) -> Result<Vec<(f64, f64)>, String> {
    let mut got = 0;
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < expected {
        if Instant::now() > deadline {
            return Err(format!("only {got} of {expected} {name} messages arrived"));
        }
        let mut batch = Vec::new();
        // Full batches, as a steady load fills them.
        while batch.len() < 10 && got + batch.len() < expected {
            let more = queue
                .receive(10 - batch.len(), Duration::from_millis(200))
                .await
                .map_err(|e| e.to_string())?;
            if more.is_empty() && Instant::now() > deadline {
                break;
            }
            batch.extend(more);
        }
        if batch.is_empty() {
            continue;
        }
        let event = serde_json::to_value(runner::poller::sqs_event(name, &batch)).unwrap();
        let cpu = cpu_ms(function.pid());
        let started = Instant::now();
        let response = function.invoke(event).await;
        samples.push((
            started.elapsed().as_secs_f64() * 1000.0,
            cpu_ms(function.pid()) - cpu,
        ));
        if response["batchItemFailures"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            return Err(format!("{name}: a batch reported failures: {response}"));
        }
        got += batch.len();
        queue
            .delete_batch(batch.iter().map(|m| m.receipt_handle.clone()).collect())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(samples)
}

fn medians(samples: &mut [(f64, f64)]) -> (f64, f64) {
    let mut wall: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.1).collect();
    (spread(&mut wall).1, spread(&mut cpu).1)
}

/// Ingest, fan-out and deliver under `cap` against a fresh deployment on moto.
async fn pipeline(
    cap: &CpuCap,
    moto: &str,
    rounds: usize,
    traffic: Traffic,
    sized: &mut Sized,
) -> Result<(), String> {
    let clients = store_aws::Clients::new(&e2e::moto::config_at(moto).await);
    let resources = store_aws::provision::create_all(&clients, &e2e::moto::unique_prefix("sizing"))
        .await
        .map_err(|e| e.to_string())?;
    let key = domain::api_key::generate_platform_key(&app::ports::OsRandom);
    let hash = domain::api_key::hash_key(&key);
    let mut functions = Vec::new();
    for name in FUNCTIONS {
        let bin = release_binary(name)?;
        functions.push(
            Function::start_command(cap.command(&bin), name, &resources, &hash, moto, &[]).await,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while functions.iter().any(|f| f.api.first_poll().is_none()) {
        if Instant::now() > deadline {
            return Err("a function never polled its Runtime API".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cap.limit()?;
    let [ingest, api, fanout, deliver] = &functions[..] else {
        unreachable!()
    };
    let receiver = Receiver::start().await;
    for i in 0..3 {
        let (status, body) = http_answer(
            &api.invoke(http_event(
                "POST",
                &format!("/v1/accounts/{ACCOUNT}/webhooks"),
                &key,
                Some(
                    json!({"url": receiver.url(&format!("r{i}"), Behavior::Status(204)),
                            "event_types": ["call.*"]}),
                ),
            ))
            .await,
        );
        if status != 201 {
            return Err(format!("creating a subscription: {status} {body}"));
        }
    }
    if let Traffic::Single = traffic {
        // More subscriptions than ingest fans out to itself, none of them for these events:
        // the events go through the fan-out function, which makes 3 deliveries of each.
        for i in 0..app::ingest::DIRECT_FAN_OUT_MAX_SUBSCRIPTIONS {
            let (status, body) = http_answer(
                &api.invoke(http_event(
                    "POST",
                    &format!("/v1/accounts/{ACCOUNT}/webhooks"),
                    &key,
                    Some(
                        json!({"url": receiver.url(&format!("other{i}"), Behavior::Status(204)),
                                "event_types": ["agent.status_changed"]}),
                    ),
                ))
                .await,
            );
            if status != 201 {
                return Err(format!("creating a subscription: {status} {body}"));
            }
        }
    }
    let events_queue = SqsQueue::new(clients.sqs.clone(), &resources.events_queue_url);
    let deliveries_queue = SqsQueue::new(clients.sqs.clone(), &resources.deliveries_queue_url);
    let (mut ingests, mut fanouts, mut delivers) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let requests: Vec<Value> = match traffic {
            Traffic::Single => (0..10)
                .map(|i| event(&format!("evt_{round}_{i}")))
                .collect(),
            Traffic::Batched => vec![json!({"events": (0..BATCHED_EVENTS)
                .map(|i| event(&format!("evt_{round}_{i}")))
                .collect::<Vec<_>>()})],
        };
        for body in requests {
            let request = http_event("POST", "/v1/events", &key, Some(body));
            let cpu = cpu_ms(ingest.pid());
            let started = Instant::now();
            let (status, body) = http_answer(&ingest.invoke(request).await);
            ingests.push((
                started.elapsed().as_secs_f64() * 1000.0,
                cpu_ms(ingest.pid()) - cpu,
            ));
            if status != 202 {
                return Err(format!("ingest: {status} {body}"));
            }
        }
        // The first round warms each process (its first SDK calls open connections).
        let (f, d) = match traffic {
            Traffic::Single => (
                drain(&events_queue, "events", fanout, 10).await?,
                // Fan-out packs a batch's deliveries per subscription: 3 packs of 10.
                drain(&deliveries_queue, "deliveries", deliver, 3).await?,
            ),
            // Ingest fans out itself (3 subscriptions) and sends one pack per subscription:
            // one deliver batch of 3 messages, 60 deliveries.
            Traffic::Batched => (
                Vec::new(),
                drain(&deliveries_queue, "deliveries", deliver, 3).await?,
            ),
        };
        if round > 0 {
            fanouts.extend(f);
            delivers.extend(d);
        } else {
            ingests.clear();
            for f in &functions {
                f.stdout.lock().unwrap().clear();
            }
        }
    }
    // Each line as Lambda would ship it to CloudWatch Logs, with its newline.
    let logged: usize = [ingest, fanout, deliver]
        .iter()
        .map(|f| {
            f.stdout
                .lock()
                .unwrap()
                .iter()
                .map(|l| l.len() + 1)
                .sum::<usize>()
        })
        .sum();
    sized.log_bytes = logged as f64 / ((rounds - 1) * traffic.deliveries_a_round()) as f64;
    sized.ingest = medians(&mut ingests);
    // The batched case has no fan-out function at work: ingest fans out itself.
    if !fanouts.is_empty() {
        sized.fanout = medians(&mut fanouts);
    }
    sized.deliver = medians(&mut delivers);
    sized.peak_rss = functions
        .iter()
        .map(|f| peak_rss_mib(f.pid()))
        .fold(0.0, f64::max);
    Ok(())
}

/// How the platform posts: one event a request (10 a round), or a second's worth in one
/// request ([`BATCHED_EVENTS`] a round), which ingest fans out itself into packs.
#[derive(Clone, Copy)]
enum Traffic {
    Single,
    Batched,
}

/// The realistic cost case's request: 20 events, a second's worth at 20/s.
const BATCHED_EVENTS: usize = 20;

impl Traffic {
    fn deliveries_a_round(self) -> usize {
        match self {
            Traffic::Single => 30,
            Traffic::Batched => BATCHED_EVENTS * 3,
        }
    }
}

/// The cost scenario's assumed in-region wait per invocation (AWS calls, and the endpoint's
/// round trip for deliver), ms: ingest of one event, a fan-out batch of 30 deliveries, a
/// deliver batch of its 3 packs (20 ms, one 100 ms endpoint round trip for the packs'
/// first deliveries, one more for each 10 of the other 27).
const IO_MS: [f64; 3] = [10.5, 40.0, 20.0 + 100.0 * (1.0 + 27.0 / 10.0)];

/// The batched case's assumed in-region wait, ms, as the cost scenario models it: ingest of
/// a 20-event request (15 ms and 0.5 per event), and a deliver batch of its 3 packs (20 ms,
/// one 100 ms endpoint round trip for the packs' first deliveries, one more for each 10 of
/// the other 57).
const BATCHED_IO_MS: [f64; 2] = [25.0, 20.0 + 100.0 * (1.0 + 57.0 / 10.0)];

pub async fn lambda_sizing(quick: bool) -> Res {
    let rounds = if quick { 2 } else { 8 };
    let moto = Moto::get().await?;
    let mut out = String::new();
    for traffic in [Traffic::Single, Traffic::Batched] {
        let mut rows = Vec::new();
        for mb in SIZES {
            let cap = CpuCap::new(mb)?;
            let mut sized = Sized::default();
            pipeline(&cap, &moto.endpoint, rounds, traffic, &mut sized).await?;
            eprintln!(
                "{mb} MB: ingest {:?}, fanout {:?}, deliver {:?}",
                sized.ingest, sized.fanout, sized.deliver
            );
            rows.push((mb, sized));
        }
        match traffic {
            Traffic::Single => single_table(&rows, rounds, &mut out),
            Traffic::Batched => batched_table(&rows, rounds, &mut out),
        }
    }
    Ok(out)
}

fn single_table(rows: &[(u32, Sized)], rounds: usize, out: &mut String) {
    out.push_str(&format!(
        "### Lambda sizing: the release binaries at each memory size's CPU share (memory / 1 769 MB of a core; a CFS quota, 20 ms period, set after init as Lambda runs init on a full vCPU), against moto; medians of {} rounds of 10 single-event requests × 3 subscriptions (1.5 KB events)\n\n\
         | memory | CPU share | ingest, 1 event: wall / CPU ms | fanout, 10 events × 3: wall / CPU ms | deliver, 3 packs (30 deliveries): wall / CPU ms | peak RSS MiB | in-region duration modelled, ingest / fanout / deliver ms | duration $ per million deliveries | log bytes per delivery |\n\
         | ---: | ---: | --- | --- | --- | ---: | --- | ---: | ---: |\n",
        rounds - 1
    ));
    for (mb, s) in rows {
        let share = f64::from(*mb) / MB_PER_VCPU;
        let modelled = [
            IO_MS[0] + s.ingest.1 / share,
            IO_MS[1] + s.fanout.1 / share,
            IO_MS[2] + s.deliver.1 / share,
        ];
        // Per delivery: a third of an ingest, a thirtieth of a fan-out batch and of a
        // deliver batch (fan-out 3, single-event ingest, full batches).
        let seconds = (modelled[0] / 3.0 + modelled[1] / 30.0 + modelled[2] / 30.0) / 1000.0;
        let dollars = seconds * f64::from(*mb) / 1024.0 * GB_SECOND * 1e6;
        out.push_str(&format!(
            "| {mb} MB | {share:.3} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.0} / {:.0} / {:.0} | ${dollars:.3} | {:.0} |\n",
            s.ingest.0,
            s.ingest.1,
            s.fanout.0,
            s.fanout.1,
            s.deliver.0,
            s.deliver.1,
            s.peak_rss,
            modelled[0],
            modelled[1],
            modelled[2],
            s.log_bytes,
        ));
    }
}

fn batched_table(rows: &[(u32, Sized)], rounds: usize, out: &mut String) {
    out.push_str(&format!(
        "\n### Lambda sizing, batched: {} rounds of one {BATCHED_EVENTS}-event request × 3 subscriptions (1.5 KB events), which ingest fans out itself into 3 packs, delivered in one batch\n\n\
         | memory | CPU share | ingest, {BATCHED_EVENTS} events: wall / CPU ms | deliver, 3 packs ({} deliveries): wall / CPU ms | peak RSS MiB | in-region duration modelled, ingest / deliver ms | duration $ per million deliveries | log bytes per delivery |\n\
         | ---: | ---: | --- | --- | ---: | --- | ---: | ---: |\n",
        rounds - 1,
        BATCHED_EVENTS * 3
    ));
    let deliveries = (BATCHED_EVENTS * 3) as f64;
    for (mb, s) in rows {
        let share = f64::from(*mb) / MB_PER_VCPU;
        let modelled = [
            BATCHED_IO_MS[0] + s.ingest.1 / share,
            BATCHED_IO_MS[1] + s.deliver.1 / share,
        ];
        let seconds = (modelled[0] + modelled[1]) / deliveries / 1000.0;
        let dollars = seconds * f64::from(*mb) / 1024.0 * GB_SECOND * 1e6;
        out.push_str(&format!(
            "| {mb} MB | {share:.3} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.0} / {:.0} | ${dollars:.3} | {:.0} |\n",
            s.ingest.0,
            s.ingest.1,
            s.deliver.0,
            s.deliver.1,
            s.peak_rss,
            modelled[0],
            modelled[1],
            s.log_bytes,
        ));
    }
}
