//! The add-ons of one kind a release reaches, by the names a guest may
//! pass to `open`: the same rule for every capability that opens add-ons.

use std::collections::HashMap;
use std::sync::Arc;

use super::AddonBinding;
use crate::provider::AddonRef;

/// An add-on's backend as a release reaches it, or why this server cannot.
pub type Reached<T> = Result<Arc<T>, String>;

/// An app's attached add-ons of some services, by name.
pub struct Attached<T: ?Sized> {
    /// By attachment name and by add-on name, lowercase.
    by_name: HashMap<String, Reached<T>>,
    /// The one `""` and `default` open.
    default: Option<Reached<T>>,
}

impl<T: ?Sized> Attached<T> {
    /// The bindings of `services`, each reached once with `reach`. The
    /// default is the first attached under one of `defaults` (in that
    /// order), else the oldest.
    pub fn new(
        bindings: &[AddonBinding],
        services: &[&str],
        defaults: &[&str],
        mut reach: impl FnMut(&AddonRef) -> Reached<T>,
    ) -> Attached<T> {
        let mut by_name = HashMap::new();
        let mut reached: Vec<(&AddonBinding, Reached<T>)> = Vec::new();
        for binding in bindings
            .iter()
            .filter(|b| services.contains(&b.service.as_str()))
        {
            let backend = reach(&binding.addon);
            by_name.insert(binding.attachment.to_ascii_lowercase(), backend.clone());
            by_name
                .entry(binding.addon.name.to_ascii_lowercase())
                .or_insert_with(|| backend.clone());
            reached.push((binding, backend));
        }
        let default = defaults
            .iter()
            .find_map(|name| reached.iter().find(|(b, _)| b.attachment == *name))
            .or(reached.first())
            .map(|(_, backend)| backend.clone());
        Attached { by_name, default }
    }

    /// What `open(name)` reaches: `""` and `default` the default add-on,
    /// else the attachment or add-on of that name; `None` if the app has
    /// none such.
    pub fn find(&self, name: &str) -> Option<Reached<T>> {
        if (name.is_empty() || name == "default") && self.default.is_some() {
            return self.default.clone();
        }
        self.by_name.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Whether the app has none of these add-ons.
    pub fn is_empty(&self) -> bool {
        self.default.is_none()
    }
}
