//! The key that seals secrets at rest on AWS (see `domain::sealing`), one per deployment,
//! kept in SSM Parameter Store as a SecureString (encrypted with the account's AWS-managed
//! key, `alias/aws/ssm`).
//!
//! CloudFormation cannot create a SecureString parameter, so the first process that needs
//! the key creates it: it generates one and puts it without overwriting; if another
//! instance created it in between, it reads that one back. Every instance ends up with the
//! key that was stored first, and a stored key is never replaced: a parameter that holds no
//! valid key stops sealing with an error naming it, since a new key would leave every
//! sealed secret unreadable.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ssm::types::ParameterType;

use app::ports::{OsRandom, SealingKeys};
use app::{Error, Result};
use domain::sealing::Sealer;

/// What the parameter says of itself to whoever looks at it in the console.
const DESCRIPTION: &str = "Seals the webhook service's signing secrets, endpoint credentials \
     and custom header values at rest. Created by the service on first use. Changing or \
     deleting it makes every stored secret unreadable.";

/// Fetches (or creates) the key on every call: wrap it in `app::sealed::CachedSealingKey`,
/// as `crate::sealing_keys` does, so that a process asks SSM once.
pub struct SsmSealingKey {
    client: aws_sdk_ssm::Client,
    parameter: String,
    access: SealingKeyAccess,
}

/// Whether a process may create the key. Only the one that seals the first secret needs
/// to (the api, when a subscription is created); the others open what it sealed, and their
/// roles are not granted `ssm:PutParameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealingKeyAccess {
    CreateOnFirstUse,
    OpenOnly,
}

impl SsmSealingKey {
    pub fn new(client: aws_sdk_ssm::Client, parameter: impl Into<String>) -> Self {
        Self::with_access(client, parameter, SealingKeyAccess::CreateOnFirstUse)
    }

    pub fn with_access(
        client: aws_sdk_ssm::Client,
        parameter: impl Into<String>,
        access: SealingKeyAccess,
    ) -> Self {
        SsmSealingKey {
            client,
            parameter: parameter.into(),
            access,
        }
    }

    /// The key stored in the parameter, or `None` if there is no parameter yet.
    async fn read(&self) -> Result<Option<Arc<Sealer>>> {
        let answer = self
            .client
            .get_parameter()
            .name(&self.parameter)
            .with_decryption(true)
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(ssm_error(e)),
        };
        let parameter = out.parameter();
        if parameter.and_then(|p| p.r#type()) != Some(&ParameterType::SecureString) {
            return Err(self.refuse("is not a SecureString (the key would be stored in clear)"));
        }
        let key = parameter.and_then(|p| p.value()).unwrap_or_default();
        self.sealer_of(key).map(Some)
    }

    fn sealer_of(&self, key: &str) -> Result<Arc<Sealer>> {
        Sealer::from_base64(key)
            .map(Arc::new)
            .map_err(|e| self.refuse(&format!("does not hold a sealing key: {e}")))
    }

    fn refuse(&self, why: &str) -> Error {
        Error::Config(format!(
            "the sealing key parameter {} {why}; it was left as it is (restore the key it \
             held): without that key the stored secrets cannot be read",
            self.parameter
        ))
    }
}

#[async_trait]
impl SealingKeys for SsmSealingKey {
    async fn sealer(&self) -> Result<Arc<Sealer>> {
        if let Some(sealer) = self.read().await? {
            return Ok(sealer);
        }
        if self.access == SealingKeyAccess::OpenOnly {
            // Retryable: whatever needed the key comes back, and finds it once created.
            return Err(Error::storage(format!(
                "the sealing key parameter {} does not exist yet; the api function creates \
                 it when it seals the first secret, and this one only opens sealed values",
                self.parameter
            )));
        }
        let key = Sealer::generate_key(&OsRandom);
        let created = self
            .client
            .put_parameter()
            .name(&self.parameter)
            .description(DESCRIPTION)
            .value(&key)
            // No key id: the account's AWS-managed key for SSM, `alias/aws/ssm`.
            .r#type(ParameterType::SecureString)
            .overwrite(false)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(parameter = %self.parameter, "created the sealing key");
                self.sealer_of(&key)
            }
            // Another instance created it first: its key is the one.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_already_exists()) =>
            {
                self.read().await?.ok_or_else(|| {
                    Error::storage(format!(
                        "SSM: {} already exists but is not found",
                        self.parameter
                    ))
                })
            }
            Err(e) => Err(ssm_error(e)),
        }
    }
}

/// A failure to reach the key (throttled, unreachable, not permitted): a dependency's, so
/// the work that needed it is tried again later.
fn ssm_error<E: std::error::Error + Send + Sync + 'static>(err: E) -> Error {
    Error::storage_caused_by("SSM", err)
}
