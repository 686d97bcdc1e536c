//! Tests of the encryption barrier ([`Storage`]) over both backends.

use std::sync::Arc;

use super::keyring::KEYRING_KEY;
use super::{Backend, Error, Op, Storage};
use crate::storage::inmem::InMemBackend;
use crate::storage::sqlite::SqliteBackend;

const ROOT: [u8; 32] = [7; 32];

async fn fresh() -> (Arc<dyn Backend>, Storage) {
    let backend: Arc<dyn Backend> = Arc::new(InMemBackend::new());
    let storage = Storage::initialize(backend.clone(), &ROOT).await.unwrap();
    (backend, storage)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn secrets_are_not_on_disk_but_read_back_after_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let backend = Arc::new(SqliteBackend::open(&path).unwrap());
    let storage = Storage::initialize(backend, &ROOT).await.unwrap();
    storage
        .put("secret/a", b"hunter2-very-secret".to_vec())
        .await
        .unwrap();
    storage
        .put_json("secret/b", &["json-hunter2-secret"])
        .await
        .unwrap();
    storage
        .apply(vec![Op::put("secret/c", "batch-hunter2-secret")])
        .await
        .unwrap();

    let mut raw = std::fs::read(&path).unwrap();
    raw.extend(std::fs::read(dir.path().join("s.db-wal")).unwrap_or_default());
    assert!(
        contains(&raw, "secret/a"),
        "sanity: keys are stored in clear"
    );
    for secret in [
        "hunter2-very-secret",
        "json-hunter2-secret",
        "batch-hunter2-secret",
    ] {
        assert!(!contains(&raw, secret), "{secret} is on disk in clear");
    }
    drop(storage);

    let backend = Arc::new(SqliteBackend::open(&path).unwrap());
    let storage = Storage::unseal(backend, &ROOT).await.unwrap();
    assert_eq!(storage.backend_kind(), "sqlite");
    let a = storage.get("secret/a").await.unwrap();
    assert_eq!(a.as_deref(), Some(&b"hunter2-very-secret"[..]));
    let b: Vec<String> = storage.get_json("secret/b").await.unwrap().unwrap();
    assert_eq!(b, ["json-hunter2-secret"]);
    assert_eq!(storage.list("secret/").await.unwrap(), ["a", "b", "c"]);
}

#[tokio::test]
async fn a_value_copied_under_another_key_fails_to_decrypt() {
    let (backend, storage) = fresh().await;
    storage
        .put("sys/policy/a", b"allow".to_vec())
        .await
        .unwrap();
    let sealed = backend.get("sys/policy/a").unwrap().unwrap();
    backend.apply(&[Op::put("sys/policy/b", sealed)]).unwrap();
    let err = storage.get("sys/policy/b").await.unwrap_err();
    assert!(
        matches!(&err, Error::Decrypt { key } if key == "sys/policy/b"),
        "{err:?}"
    );
    let err = storage.scan("sys/", "sys0", 10).await.unwrap_err();
    assert!(matches!(err, Error::Decrypt { .. }), "{err:?}");
}

#[tokio::test]
async fn tampered_truncated_and_unknown_term_values_are_refused() {
    let (backend, storage) = fresh().await;
    storage.put("k", b"value".to_vec()).await.unwrap();
    let sealed = backend.get("k").unwrap().unwrap();
    let mut flipped = sealed.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut term9 = sealed.clone();
    term9[1..5].copy_from_slice(&9u32.to_be_bytes());
    backend
        .apply(&[
            Op::put("flip", flipped),
            Op::put("short", &sealed[..10]),
            Op::put("t9", term9),
        ])
        .unwrap();
    assert!(matches!(
        storage.get("flip").await,
        Err(Error::Decrypt { .. })
    ));
    assert!(matches!(
        storage.get("short").await,
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        storage.get("t9").await,
        Err(Error::UnknownKeyTerm { term: 9, .. })
    ));
}

#[tokio::test]
async fn wrong_root_key_double_init_and_uninitialized_are_refused() {
    let backend: Arc<dyn Backend> = Arc::new(InMemBackend::new());
    assert!(!Storage::is_initialized(&backend).await.unwrap());
    let err = Storage::unseal(backend.clone(), &ROOT).await.unwrap_err();
    assert!(matches!(err, Error::NotInitialized), "{err:?}");
    let storage = Storage::initialize(backend.clone(), &ROOT).await.unwrap();
    assert!(Storage::is_initialized(&backend).await.unwrap());
    storage.put("kept", b"v".to_vec()).await.unwrap();
    let err = Storage::initialize(backend.clone(), &[1; 32])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyInitialized), "{err:?}");
    let err = Storage::unseal(backend.clone(), &[8; 32])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadUnsealKey), "{err:?}");
    let again = Storage::unseal(backend, &ROOT).await.unwrap();
    assert_eq!(again.get("kept").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn rotation_keeps_old_values_and_seals_new_writes_with_the_new_term() {
    let (backend, storage) = fresh().await;
    assert_eq!(storage.active_term(), 1);
    storage.put("old", b"one".to_vec()).await.unwrap();
    assert_eq!(backend.get("old").unwrap().unwrap()[..5], [1, 0, 0, 0, 1]);
    let clone = storage.clone();
    assert_eq!(storage.rotate_key().await.unwrap(), 2);
    assert_eq!(clone.active_term(), 2, "clones share the keyring");
    clone.put("new", b"two".to_vec()).await.unwrap();
    assert_eq!(
        backend.get("new").unwrap().unwrap()[1..5],
        2u32.to_be_bytes()
    );
    assert_eq!(
        storage.get("old").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        storage.get("new").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );

    let reopened = Storage::unseal(backend.clone(), &ROOT).await.unwrap();
    assert_eq!(reopened.active_term(), 2, "the rotation was stored");
    assert_eq!(
        reopened.get("old").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(reopened.rotate_key().await.unwrap(), 3);
}

#[tokio::test]
async fn the_keyring_path_is_reserved_and_hidden() {
    let (backend, storage) = fresh().await;
    let err = storage.put(KEYRING_KEY, b"x".to_vec()).await.unwrap_err();
    assert!(matches!(err, Error::ReservedKey { .. }), "{err:?}");
    let batch = vec![Op::put("fine", "x"), Op::delete(KEYRING_KEY)];
    assert!(matches!(
        storage.apply(batch).await,
        Err(Error::ReservedKey { .. })
    ));
    assert_eq!(
        backend.get("fine").unwrap(),
        None,
        "a refused batch writes nothing"
    );
    assert!(matches!(
        storage.get(KEYRING_KEY).await,
        Err(Error::ReservedKey { .. })
    ));
    storage.put("core/mounts", b"m".to_vec()).await.unwrap();
    assert_eq!(storage.list("core/").await.unwrap(), ["mounts"]);
    assert_eq!(storage.list("").await.unwrap(), ["core/"]);
    let first = storage.scan("core/", "core0", 1).await.unwrap();
    assert_eq!(first, [("core/mounts".to_owned(), b"m".to_vec())]);
}

#[tokio::test]
async fn json_round_trips_and_bad_json_names_no_value() {
    let (_, storage) = fresh().await;
    storage
        .put_json("j", &serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let v: serde_json::Value = storage.get_json("j").await.unwrap().unwrap();
    assert_eq!(v["n"], 1);
    assert_eq!(storage.get_json::<u8>("absent").await.unwrap(), None);
    storage.put("bad", b"\"hunter2\"".to_vec()).await.unwrap();
    let err = storage.get_json::<u32>("bad").await.unwrap_err();
    assert!(
        matches!(&err, Error::Json { key, .. } if key == "bad"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn plaintext_mode_stores_values_as_is() {
    let backend: Arc<dyn Backend> = Arc::new(InMemBackend::new());
    let storage = Storage::plaintext_for_benchmarks(backend.clone());
    storage.put("k", b"clear".to_vec()).await.unwrap();
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"clear"[..]));
    assert_eq!(
        storage.get("k").await.unwrap().as_deref(),
        Some(&b"clear"[..])
    );
    assert_eq!(storage.active_term(), 0);
    assert!(matches!(
        storage.rotate_key().await,
        Err(Error::PlaintextMode)
    ));
}

#[tokio::test]
async fn scan_decrypts_in_order_and_debug_shows_no_key() {
    let (_, storage) = fresh().await;
    for i in 0..5 {
        storage.put(&format!("s/{i}"), vec![i]).await.unwrap();
    }
    let pairs = storage.scan("s/1", "s/4", 10).await.unwrap();
    let expected: Vec<(String, Vec<u8>)> = (1..4).map(|i| (format!("s/{i}"), vec![i])).collect();
    assert_eq!(pairs, expected);
    let shown = format!("{storage:?}");
    assert!(
        shown.contains("active_term: 1") && !shown.contains("7, 7"),
        "{shown}"
    );
    let op = format!("{:?}", Op::put("k", "hunter2"));
    assert!(!op.contains("hunter2") && op.contains("7 bytes"), "{op}");
}
