//! formation: how many dynos of each process type an app runs.
//!
//! Owns formation records (`web=2`). It never starts or stops dynos; the
//! platform reconciles the running dynos with these numbers.

use crate::procfile::ProcessType;
use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// The most dynos of one type an app may ask for.
pub const MAX_QUANTITY: u32 = 100;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Formation {
    pub id: String,
    /// The app's id.
    pub app: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub quantity: u32,
    pub size: String,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Clone)]
pub struct Formations {
    tree: Tree,
}

fn key(app: &str, kind: &str) -> String {
    format!("{app}/{kind}")
}

impl Formations {
    pub fn open(db: &Db) -> anyhow::Result<Formations> {
        Ok(Formations {
            tree: db.tree("formation")?,
        })
    }

    pub fn list(&self, app: &str) -> Result<Vec<Formation>, StoreError> {
        self.tree.scan(format!("{app}/"))
    }

    pub fn get(&self, app: &str, kind: &ProcessType) -> Result<Option<Formation>, StoreError> {
        self.tree.get(key(app, kind.as_str()))
    }

    pub fn set(
        &self,
        app: &str,
        kind: &ProcessType,
        quantity: u32,
    ) -> Result<Formation, StoreError> {
        let now = now_ms();
        let formation = match self.get(app, kind)? {
            Some(mut existing) => {
                existing.quantity = quantity;
                existing.updated_at = now;
                existing
            }
            None => Formation {
                id: new_id(),
                app: app.to_string(),
                kind: kind.to_string(),
                quantity,
                size: "standard-1x".to_string(),
                created_at: now,
                updated_at: now,
            },
        };
        self.tree.put(key(app, kind.as_str()), &formation)?;
        Ok(formation)
    }

    pub fn remove(&self, app: &str, kind: &ProcessType) -> Result<(), StoreError> {
        self.tree.remove(key(app, kind.as_str()))
    }

    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        self.tree.remove_prefix(format!("{app}/"))
    }
}
