//! formation: how many dynos of each process type an app runs.
//!
//! Owns formation records (`web=2`). It never starts or stops dynos; the
//! platform reconciles the running dynos with these numbers.

use crate::procfile::ProcessType;
use crate::size::Size;
use crate::store::{Db, StoreError, Tree, new_id, now_ms};

/// The most dynos of one type an app may ask for.
pub const MAX_QUANTITY: u32 = 100;

/// The most requests one instance may serve when reuse is on.
pub const MAX_REUSE: u32 = 100_000;

/// A process type's new quantity: a number, or a step from the current one
/// (Heroku's `ps:scale web+1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantity {
    Exactly(u32),
    More(u32),
    Fewer(u32),
}

impl Quantity {
    /// The quantity this makes of `current` (never below 0).
    pub fn of(self, current: u32) -> u32 {
        match self {
            Quantity::Exactly(n) => n,
            Quantity::More(n) => current.saturating_add(n),
            Quantity::Fewer(n) => current.saturating_sub(n),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid quantity {0:?}: use a number such as 2, or a step such as +1 or -1")]
pub struct InvalidQuantity(pub String);

impl std::str::FromStr for Quantity {
    type Err = InvalidQuantity;

    fn from_str(s: &str) -> Result<Quantity, InvalidQuantity> {
        let invalid = || InvalidQuantity(s.to_string());
        let number = |digits: &str| {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            digits.parse::<u32>().map_err(|_| invalid())
        };
        let s = s.trim();
        match (s.strip_prefix('+'), s.strip_prefix('-')) {
            (Some(step), _) => number(step).map(Quantity::More),
            (_, Some(step)) => number(step).map(Quantity::Fewer),
            _ => number(s).map(Quantity::Exactly),
        }
    }
}

/// A change to one process type's formation; what is `None` stays.
#[derive(Clone, Copy, Debug, Default)]
pub struct Change {
    pub quantity: Option<Quantity>,
    pub size: Option<Size>,
    pub reuse: Option<u32>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Formation {
    pub id: String,
    /// The app's id.
    pub app: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub quantity: u32,
    pub size: Size,
    /// Requests one instance may serve before it is replaced; 0 (the
    /// default) gives every request a fresh instance.
    #[serde(default)]
    pub reuse: u32,
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

    /// On a cluster, the keys of the formations other hosts change, as they
    /// arrive; [`Formations::app_of`] names their app.
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        self.tree.changes()
    }

    /// The app id a formation key belongs to (`APP/TYPE`).
    pub fn app_of(key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        Some(key.split_once('/')?.0.to_string())
    }

    pub fn list(&self, app: &str) -> Result<Vec<Formation>, StoreError> {
        self.tree.scan(format!("{app}/"))
    }

    pub fn get(&self, app: &str, kind: &ProcessType) -> Result<Option<Formation>, StoreError> {
        self.tree.get(key(app, kind.as_str()))
    }

    /// Applies a change; a type without a record starts at 0 dynos of the
    /// default size, serving each request in a fresh instance.
    pub fn set(
        &self,
        app: &str,
        kind: &ProcessType,
        change: Change,
    ) -> Result<Formation, StoreError> {
        let now = now_ms();
        // Revision-checked: a relative change (`web+1`) made on two hosts at
        // once counts twice.
        self.tree
            .update(key(app, kind.as_str()), |formation: Option<Formation>| {
                let mut formation = formation.unwrap_or_else(|| Formation {
                    id: new_id(),
                    app: app.to_string(),
                    kind: kind.to_string(),
                    quantity: 0,
                    size: Size::default(),
                    reuse: 0,
                    created_at: now,
                    updated_at: now,
                });
                if let Some(quantity) = change.quantity {
                    formation.quantity = quantity.of(formation.quantity);
                }
                if let Some(size) = change.size {
                    formation.size = size;
                }
                if let Some(reuse) = change.reuse {
                    formation.reuse = reuse;
                }
                formation.updated_at = now;
                formation
            })
    }

    pub fn remove(&self, app: &str, kind: &ProcessType) -> Result<(), StoreError> {
        self.tree.remove(key(app, kind.as_str()))
    }

    pub fn delete_app(&self, app: &str) -> Result<(), StoreError> {
        self.tree.remove_prefix(format!("{app}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_numbers_or_steps() {
        assert_eq!("2".parse(), Ok(Quantity::Exactly(2)));
        assert_eq!("+1".parse(), Ok(Quantity::More(1)));
        assert_eq!("-3".parse(), Ok(Quantity::Fewer(3)));
        for bad in ["", "+", "-", "two", "1.5", "+-1", "99999999999", " 2x"] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad:?}");
        }
        assert_eq!(Quantity::Fewer(3).of(1), 0);
        assert_eq!(Quantity::More(1).of(u32::MAX), u32::MAX);
        assert_eq!(Quantity::Exactly(4).of(9), 4);
    }
}
