//! The embedded backend's reads over more than one key.

use super::{Entries, StoreError};

pub(super) fn scan(tree: &sled::Tree, prefix: &[u8]) -> Result<Entries, StoreError> {
    tree.scan_prefix(prefix)
        .map(|entry| {
            let (key, bytes) = entry?;
            Ok((key.to_vec(), bytes.to_vec()))
        })
        .collect()
}

pub(super) fn last(tree: &sled::Tree, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match tree.scan_prefix(prefix).next_back() {
        Some(entry) => Ok(Some(entry?.1.to_vec())),
        None => Ok(None),
    }
}
