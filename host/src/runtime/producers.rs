//! What a component says about the tools that built it (its `producers`
//! section), and what renga has learnt about those tools.

use wasmparser::{KnownCustom, Parser, Payload};

/// The builders whose components answer only one request per instance,
/// with the newest version known to: (tool as it names itself, major,
/// minor).
///
/// componentize-js up to 0.23 runs the app's fetch listener on one
/// `FetchEvent` per instance: on a second request the listener's
/// `respondWith` throws ("can't be called twice on the same event") and the
/// request never gets its answer.
const SINGLE_USE: &[(&str, &str, u64, u64)] = &[("ComponentizeJS", "componentize-js", 0, 23)];

/// Why instances of the component in `bytes` cannot be kept between
/// requests (`--reuse`), when the tool that built it is known not to
/// allow it: "was built by componentize-js 0.23.0, whose ...". `None` for
/// every other component, and for bytes that are not one.
pub fn single_use_reason(bytes: &[u8]) -> Option<String> {
    top_level_producers(bytes)
        .into_iter()
        .find_map(|(tool, version)| {
            let (_, known_as, ..) = SINGLE_USE.iter().find(|(name, _, major, minor)| {
                *name == tool && at_most(&version, *major, *minor)
            })?;
            Some(format!(
                "was built by {known_as} {version}, whose engine answers one request per instance: a second request to a kept instance would never be answered"
            ))
        })
}

/// The `processed-by` tools of the outermost component, as (name, version).
fn top_level_producers(bytes: &[u8]) -> Vec<(String, String)> {
    let mut depth = 0usize;
    let mut tools = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return Vec::new();
        };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) if depth == 0 => {
                let KnownCustom::Producers(fields) = section.as_known() else {
                    continue;
                };
                for field in fields.into_iter().flatten() {
                    if field.name != "processed-by" {
                        continue;
                    }
                    for value in field.values.into_iter().flatten() {
                        tools.push((value.name.to_string(), value.version.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    tools
}

/// Whether `version` ("0.23.0") is at most `major.minor`.
fn at_most(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) <= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component holding only a `producers` custom section with these
    /// `processed-by` tools.
    fn component_by(tools: &[(&str, &str)]) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
        let mut payload = Vec::new();
        string(&mut payload, "producers");
        payload.push(1);
        string(&mut payload, "processed-by");
        payload.push(tools.len() as u8);
        for (name, version) in tools {
            string(&mut payload, name);
            string(&mut payload, version);
        }
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.push(0);
        bytes.push(payload.len() as u8);
        bytes.extend(payload);
        bytes
    }

    #[test]
    fn componentize_js_up_to_0_23_answers_once_per_instance() {
        let js = component_by(&[("wit-component", "0.259.0"), ("ComponentizeJS", "0.23.0")]);
        let reason = single_use_reason(&js).expect("refused");
        assert!(reason.contains("componentize-js 0.23.0"), "{reason}");
        assert!(single_use_reason(&component_by(&[("ComponentizeJS", "0.18.1")])).is_some());
        // A later release is not assumed to have the fault.
        assert!(single_use_reason(&component_by(&[("ComponentizeJS", "0.24.0")])).is_none());
        assert!(single_use_reason(&component_by(&[("wit-component", "0.259.0")])).is_none());
        assert!(single_use_reason(b"not a component").is_none());
    }
}
