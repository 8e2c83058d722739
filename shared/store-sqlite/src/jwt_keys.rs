//! The service's JWT signing keys: one row holding the ring as JSON (its private keys
//! sealed by the layer above), written only from the version before.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{Db, DbError};
use app::ports::JwtKeyStore;
use app::{Error, Result};
use domain::jwt::KeyRing;

pub struct SqliteJwtKeyStore {
    db: Db,
}

impl SqliteJwtKeyStore {
    pub fn new(db: Db) -> Self {
        SqliteJwtKeyStore { db }
    }
}

#[async_trait]
impl JwtKeyStore for SqliteJwtKeyStore {
    async fn key_ring(&self) -> Result<Option<KeyRing>> {
        self.db
            .read(|c| {
                let text: Option<String> = c
                    .prepare_cached("SELECT ring FROM jwt_keys WHERE id = 1")?
                    .query_row([], |r| r.get(0))
                    .optional()?;
                text.map(|t| {
                    serde_json::from_str(&t).map_err(|e| {
                        DbError::Port(Error::storage_caused_by("stored JWT key ring", e))
                    })
                })
                .transpose()
            })
            .await
    }

    async fn put_key_ring(&self, ring: &KeyRing) -> Result<bool> {
        let text = serde_json::to_string(ring).expect("a key ring serialises");
        let version = ring.version as i64;
        self.db
            .call(move |c| {
                let changed = if version == 1 {
                    c.prepare_cached(
                        "INSERT INTO jwt_keys (id, version, ring) VALUES (1, ?1, ?2)
                         ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(params![version, text])?
                } else {
                    c.prepare_cached(
                        "UPDATE jwt_keys SET version = ?1, ring = ?2
                         WHERE id = 1 AND version = ?1 - 1",
                    )?
                    .execute(params![version, text])?
                };
                Ok(changed == 1)
            })
            .await
    }
}
