//! The behaviour suite every [`Backend`] must pass, written once.
//! `backend_suite!(expr)` expands to one `#[test]` per case, where `expr`
//! yields `(backend, guard)` and `guard` lives as long as the test (e.g. the
//! temporary directory of a database file).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Backend, Op};

macro_rules! backend_suite {
    ($make:expr) => {
        $crate::storage::backend_tests::backend_suite!(@cases $make;
            get_put_delete,
            apply_applies_in_order,
            apply_is_atomic_to_readers,
            list_is_one_level_sorted_and_deduplicated,
            list_under_a_folder_with_ten_thousand_children,
            scan_respects_bounds_and_limit,
            kind_is_named,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (backend, _guard) = $make;
                $crate::storage::backend_tests::$case(::std::sync::Arc::new(backend));
            }
        )*
    };
}
pub(crate) use backend_suite;

fn put(b: &dyn Backend, key: &str, value: &str) {
    b.apply(&[Op::put(key, value.as_bytes())]).unwrap();
}

fn get(b: &dyn Backend, key: &str) -> Option<String> {
    b.get(key).unwrap().map(|v| String::from_utf8(v).unwrap())
}

fn keys(pairs: &[(String, Vec<u8>)]) -> Vec<&str> {
    pairs.iter().map(|(k, _)| k.as_str()).collect()
}

pub(crate) fn get_put_delete(b: Arc<dyn Backend>) {
    let b = &*b;
    assert_eq!(get(b, "a"), None);
    put(b, "a", "1");
    assert_eq!(get(b, "a").as_deref(), Some("1"));
    put(b, "a", "2");
    assert_eq!(get(b, "a").as_deref(), Some("2"), "put overwrites");
    b.apply(&[Op::put("empty", Vec::new())]).unwrap();
    assert_eq!(
        b.get("empty").unwrap(),
        Some(Vec::new()),
        "empty value is not absent"
    );
    b.apply(&[Op::delete("a")]).unwrap();
    assert_eq!(get(b, "a"), None);
    b.apply(&[Op::delete("never-written")]).unwrap();
    b.apply(&[]).unwrap();
    let binary: Vec<u8> = (0..=255).collect();
    b.apply(&[Op::put("bin", binary.clone())]).unwrap();
    assert_eq!(
        b.get("bin").unwrap(),
        Some(binary),
        "values are arbitrary bytes"
    );
}

pub(crate) fn apply_applies_in_order(b: Arc<dyn Backend>) {
    let b = &*b;
    put(b, "gone", "x");
    b.apply(&[
        Op::put("a", "1"),
        Op::delete("a"),
        Op::put("b", "1"),
        Op::put("b", "2"),
        Op::delete("gone"),
        Op::put("c", "3"),
    ])
    .unwrap();
    assert_eq!(get(b, "a"), None);
    assert_eq!(get(b, "b").as_deref(), Some("2"));
    assert_eq!(get(b, "c").as_deref(), Some("3"));
    assert_eq!(get(b, "gone"), None);
}

/// A reader taking consistent snapshots (one `scan`) never sees half of a
/// batch that writes two keys together.
pub(crate) fn apply_is_atomic_to_readers(b: Arc<dyn Backend>) {
    b.apply(&[Op::put("pair/x", "0"), Op::put("pair/y", "0")])
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                let pairs = b.scan("pair/", "pair0", 10).unwrap();
                assert_eq!(keys(&pairs), ["pair/x", "pair/y"]);
                assert_eq!(
                    pairs[0].1, pairs[1].1,
                    "saw half a batch after {reads} reads"
                );
                reads += 1;
            }
        })
    };
    for i in 1..300 {
        let v = i.to_string();
        b.apply(&[Op::put("pair/x", v.as_str()), Op::put("pair/y", v.as_str())])
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
}

pub(crate) fn list_is_one_level_sorted_and_deduplicated(b: Arc<dyn Backend>) {
    let b = &*b;
    for key in [
        "dir/y/z", "a", "b/d/e", "b/c", "b0", "b.x", "c.d", "dir/", "dir/x", "other/1", "é",
        "dir/y/w",
    ] {
        put(b, key, "v");
    }
    assert_eq!(
        b.list("").unwrap(),
        ["a", "b.x", "b/", "b0", "c.d", "dir/", "other/", "é"]
    );
    assert_eq!(
        b.list("dir/").unwrap(),
        ["x", "y/"],
        "the key 'dir/' itself is not a child"
    );
    assert_eq!(b.list("b/").unwrap(), ["c", "d/"]);
    assert_eq!(b.list("dir/y/").unwrap(), ["w", "z"]);
    assert!(b.list("nope/").unwrap().is_empty());
    assert!(
        b.list("dir/x/").unwrap().is_empty(),
        "a leaf has no children"
    );
}

pub(crate) fn list_under_a_folder_with_ten_thousand_children(b: Arc<dyn Backend>) {
    let b = &*b;
    let ops: Vec<Op> = (0..10_000)
        .map(|i| Op::put(format!("leases/sub/{i:05}"), "v"))
        .collect();
    b.apply(&ops).unwrap();
    assert_eq!(b.list("leases/").unwrap(), ["sub/"]);
    put(b, "leases/direct", "v");
    put(b, "leases/sub0", "v");
    assert_eq!(b.list("leases/").unwrap(), ["direct", "sub/", "sub0"]);
    let children = b.list("leases/sub/").unwrap();
    assert_eq!(
        children.len(),
        10_000,
        "a huge flat folder lists completely"
    );
    assert_eq!(children.first().map(String::as_str), Some("00000"));
    assert_eq!(children.last().map(String::as_str), Some("09999"));
}

pub(crate) fn scan_respects_bounds_and_limit(b: Arc<dyn Backend>) {
    let b = &*b;
    for key in ["k1", "k2", "k3", "k4", "k5", "j", "l"] {
        put(b, key, key);
    }
    let pairs = b.scan("k2", "k4", 10).unwrap();
    assert_eq!(keys(&pairs), ["k2", "k3"], "start inclusive, end exclusive");
    assert_eq!(pairs[0].1, b"k2", "values come along");
    assert_eq!(keys(&b.scan("k", "k\u{10ffff}", 2).unwrap()), ["k1", "k2"]);
    assert_eq!(
        keys(&b.scan("k2\0", "k\u{10ffff}", 10).unwrap()),
        ["k3", "k4", "k5"],
        "continuing after the last key seen"
    );
    assert_eq!(keys(&b.scan("", "\u{10ffff}", 100).unwrap()).len(), 7);
    assert!(b.scan("k3", "k3", 10).unwrap().is_empty());
    assert!(b.scan("k4", "k2", 10).unwrap().is_empty());
    assert!(b.scan("k1", "k5", 0).unwrap().is_empty());
}

pub(crate) fn kind_is_named(b: Arc<dyn Backend>) {
    assert!(["inmem", "sqlite"].contains(&b.kind()));
}
