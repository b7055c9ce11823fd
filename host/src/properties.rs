//! Property tests for every parser at the edge: what users, clients and
//! builds hand the platform (Procfiles, `.env` files, app, config and
//! process-type names, tarballs, API bodies, CLI units, request headers).
//! Each parser must never panic on any input, must accept exactly what its
//! rule says, and must give back what it was given where a round trip
//! exists. Tarballs must never write outside the folder they unpack into.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use crate::app::AppName;
use crate::archive::{self, Limits};
use crate::config::{ConfigKey, ConfigVars};
use crate::procfile::{Command, ProcessType, Procfile};
use crate::units::{ByteSize, HumanDuration};

/// Any text, weighted toward the characters these formats care about.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9_ :=#'\"\\\\\n\t.-]{0,80}",
        proptest::collection::vec(
            prop_oneof![
                Just("web".to_string()),
                Just(":".to_string()),
                Just("=".to_string()),
                Just("\n".to_string()),
                Just("#".to_string()),
                Just("\"".to_string()),
                Just("'".to_string()),
                Just("\\".to_string()),
                Just("export ".to_string()),
                Just(".wasm".to_string()),
                "[a-z]{1,5}",
            ],
            0..20
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn process_type() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,30}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn procfiles_never_panic(input in text()) {
        let _ = Procfile::parse(&input);
    }

    #[test]
    fn procfiles_round_trip(
        entries in proptest::collection::btree_map(
            process_type(),
            prop_oneof![
                ("[a-z][a-z0-9/_-]{0,12}\\.wasm", proptest::collection::vec("[a-z0-9=-]{1,8}", 0..3))
                    .prop_map(|(path, args)| Command::Component { path, args }),
                "[a-z][a-z0-9 ._-]{0,30}[a-z0-9]".prop_map(Command::Native),
            ],
            0..6,
        )
    ) {
        let map: BTreeMap<ProcessType, Command> = entries
            .into_iter()
            .map(|(kind, command)| (kind.parse().unwrap(), command))
            .collect();
        let procfile = Procfile::from_map(map);
        let reparsed = Procfile::parse(&procfile.to_string()).unwrap();
        prop_assert_eq!(reparsed, procfile);
    }

    #[test]
    fn process_types_follow_their_rule(input in text()) {
        let valid = !input.is_empty()
            && input.len() <= ProcessType::MAX_LEN
            && input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        prop_assert_eq!(input.parse::<ProcessType>().is_ok(), valid);
    }

    #[test]
    fn dotenv_files_never_panic(input in text()) {
        let _ = ConfigVars::from_dotenv(&input);
    }

    #[test]
    fn dotenv_values_round_trip_in_single_quotes(
        vars in proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,20}", "[^'\n\r\0]{0,40}", 0..8)
    ) {
        let text: String = vars.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect();
        let parsed = ConfigVars::from_dotenv(&text).unwrap();
        prop_assert_eq!(parsed.len(), vars.len());
        for (key, value) in &vars {
            prop_assert_eq!(parsed.get(key), Some(value.as_str()));
        }
    }

    #[test]
    fn config_keys_follow_the_shell_rule(input in text()) {
        let mut bytes = input.bytes();
        let valid = input.len() <= ConfigKey::MAX_LEN
            && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        prop_assert_eq!(input.parse::<ConfigKey>().is_ok(), valid);
    }

    #[test]
    fn app_names_follow_herokus_rule(input in text()) {
        let valid = (3..=30).contains(&input.len())
            && input.as_bytes()[0].is_ascii_lowercase()
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        prop_assert_eq!(input.parse::<AppName>().is_ok(), valid);
    }

    #[test]
    fn cli_units_never_panic(input in text()) {
        let _ = input.parse::<HumanDuration>();
        let _ = input.parse::<ByteSize>();
        let _ = input.parse::<crate::size::Size>();
        let _ = input.parse::<crate::release::ReleaseVersion>();
        let _ = crate::cli::parse_idle_after(&input);
    }

    #[test]
    fn config_var_bodies_never_panic(body in json()) {
        if let Ok(raw) = serde_json::from_value::<BTreeMap<String, Option<serde_json::Value>>>(body)
            && let Ok(changes) = crate::api::config_changes(raw) {
                for (key, value) in changes {
                    if let Some(value) = value {
                        let _ = crate::config::check_value(&key, &value);
                    }
                }
            }
    }

    #[test]
    fn formation_and_app_bodies_never_panic(body in json()) {
        if let Ok(update) = serde_json::from_value::<crate::api::FormationUpdate>(body.clone()) {
            let _ = update.change();
        }
        let _ = crate::api::idle_after(&body);
    }

    #[test]
    fn any_bytes_as_a_tarball_are_refused_or_read(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = archive::scan(&bytes[..], Limits::DEFAULT);
        let _ = archive::scan(flate2::read::GzDecoder::new(&bytes[..]), Limits::DEFAULT);
    }

    #[test]
    fn tarballs_never_write_outside_their_folder(entries in proptest::collection::vec(entry(), 1..8)) {
        let root = scratch();
        let into = root.join("out");
        let bytes = raw_tarball(&entries);
        let _ = archive::unpack(&bytes[..], &into, Limits { bytes: 1 << 20, files: 100 });
        // Nothing appeared beside the folder (a sibling, or the parent).
        let beside: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "out")
            .collect();
        prop_assert!(beside.is_empty(), "{:?} escaped", beside);
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// Arbitrary JSON, a few levels deep.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|n| serde_json::json!(n)),
        text().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("quantity".to_string()),
                    Just("size".to_string()),
                    Just("reuse".to_string()),
                    "[A-Za-z_][A-Za-z0-9_]{0,8}",
                    any::<String>(),
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One raw tar entry: a kind, a path (hostile ones included), link target
/// and contents.
#[derive(Clone, Debug)]
struct Entry {
    kind: u8,
    path: String,
    link: String,
    data: Vec<u8>,
}

fn entry() -> impl Strategy<Value = Entry> {
    let path = prop_oneof![
        "[a-z]{1,6}(/[a-z]{1,6}){0,2}",
        Just("../escape".to_string()),
        Just("a/../../escape".to_string()),
        Just("/etc/escape".to_string()),
        Just("link/escape".to_string()),
        Just("link".to_string()),
        Just(".".to_string()),
    ];
    let link = prop_oneof![
        Just("..".to_string()),
        Just("../..".to_string()),
        Just("/".to_string()),
        Just("/etc".to_string()),
        "[a-z]{1,6}",
    ];
    (
        prop_oneof![
            Just(b'0'),
            Just(b'5'),
            Just(b'2'),
            Just(b'1'),
            Just(b'3'),
            Just(b'6')
        ],
        path,
        link,
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(kind, path, link, data)| Entry {
            kind,
            path,
            link,
            data,
        })
}

/// Writes entries with raw headers, so that paths the tar crate's builder
/// would refuse (`..`, absolute) reach the reader.
fn raw_tarball(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut header = tar::Header::new_old();
        let name = e.path.as_bytes();
        let len = name.len().min(99);
        header.as_old_mut().name[..len].copy_from_slice(&name[..len]);
        let link = e.link.as_bytes();
        let len = link.len().min(99);
        header.as_old_mut().linkname[..len].copy_from_slice(&link[..len]);
        header.set_mode(0o644);
        let size = if e.kind == b'0' { e.data.len() } else { 0 };
        header.set_size(size as u64);
        header.as_old_mut().linkflag = [e.kind];
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        if size > 0 {
            out.extend_from_slice(&e.data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "renga-properties-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_escape_probe_sees_an_escape() {
    // The property above would notice a file written beside the folder.
    let root = scratch();
    std::fs::write(root.join("escape"), b"x").unwrap();
    let beside: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "out")
        .collect();
    assert_eq!(beside.len(), 1);
    assert!(!Path::new(&root.join("out")).exists());
    let _ = std::fs::remove_dir_all(&root);
}
