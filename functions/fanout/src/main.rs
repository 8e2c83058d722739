//! Fan-out: events queue batches become deliveries. The same function sends alert e-mail
//! (through SES, when the template names a sender) for the operational events it fans
//! out, and the alert digests on their schedule.

use std::sync::Arc;

use app::fanout::{handle_invocation, Invocation, Response};
use app::ports::{NoOutboundHttp, SystemClock};
use app::{Services, Settings};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let config = aws_config::load_from_env().await;
    let resources = store_aws::Resources::from_env()?;
    let stores = store_aws::stores(&store_aws::Clients::new(&config), &resources);
    let sender = settings.alert_sender.clone();
    let mut services = Services::new(
        stores,
        Arc::new(NoOutboundHttp),
        Arc::new(SystemClock),
        settings,
    );
    if let Some(from) = sender {
        // Building the client makes no call: init stays as fast without e-mail.
        services = services.with_mailer(Arc::new(mail_ses::SesMailer::new(&config, &from)));
    }
    lambda_runtime::run(service_fn(|event: LambdaEvent<Invocation>| {
        let services = services.clone();
        // Per-message failures are in a batch's response; a batch itself never fails.
        async move { Ok::<Response, Error>(handle_invocation(&services, event.payload).await?) }
    }))
    .await
}
