//! The behaviour suite every [`Backend`] must pass, written once.
//! `backend_suite!(expr)` expands to one `#[test]` per case, where `expr`
//! yields `(backend, guard)` and `guard` lives as long as the test (e.g. the
//! temporary directory of a database file, or a database of its own).
//!
//! Public (and exported as `pgsecrets::backend_suite!`) only so that the
//! integration tests run it against the postgresql backend, which needs a
//! real PostgreSQL server; nothing else calls it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Backend, Op};

#[doc(hidden)]
#[macro_export]
macro_rules! backend_suite {
    ($make:expr) => {
        $crate::backend_suite!(@cases $make;
            get_put_delete,
            apply_applies_in_order,
            apply_is_atomic_to_readers,
            list_is_one_level_sorted_and_deduplicated,
            list_under_a_folder_with_ten_thousand_children,
            scan_respects_bounds_and_limit,
            keys_order_bytewise_with_nul_high_and_multibyte_characters,
            range_scans_page_through_a_folder,
            concurrent_writers_apply_whole_batches,
            kind_is_named,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (backend, _guard) = $make;
                $crate::storage::conformance::$case(::std::sync::Arc::new(backend));
            }
        )*
    };
}

fn put(b: &dyn Backend, key: &str, value: &str) {
    b.apply(&[Op::put(key, value.as_bytes())]).unwrap();
}

fn get(b: &dyn Backend, key: &str) -> Option<String> {
    b.get(key).unwrap().map(|v| String::from_utf8(v).unwrap())
}

fn keys(pairs: &[(String, Vec<u8>)]) -> Vec<&str> {
    pairs.iter().map(|(k, _)| k.as_str()).collect()
}

pub fn get_put_delete(b: Arc<dyn Backend>) {
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

pub fn apply_applies_in_order(b: Arc<dyn Backend>) {
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
pub fn apply_is_atomic_to_readers(b: Arc<dyn Backend>) {
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

pub fn list_is_one_level_sorted_and_deduplicated(b: Arc<dyn Backend>) {
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

pub fn list_under_a_folder_with_ten_thousand_children(b: Arc<dyn Backend>) {
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

pub fn scan_respects_bounds_and_limit(b: Arc<dyn Backend>) {
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

/// Keys are compared as bytes (UTF-8), never by a collation: NUL, DEL,
/// U+0080 (the first two-byte character), U+00FF, CJK and U+10FFFF (bytes
/// up to 0xF4) sort by their encodings, in list and scan alike.
pub fn keys_order_bytewise_with_nul_high_and_multibyte_characters(b: Arc<dyn Backend>) {
    let b = &*b;
    let names = [
        "z",
        "\u{0}",
        "a\u{0}b",
        "a",
        "A",
        "\u{1}",
        "\u{7f}",
        "\u{80}",
        "\u{ff}",
        "é",
        "日本",
        "\u{10ffff}",
        "a/deep",
        "\u{ff}/x",
    ];
    for name in names {
        put(b, &format!("o/{name}"), name);
    }
    put(b, "o0", "outside");
    put(b, "o.", "outside");
    let expected = [
        "\u{0}",
        "\u{1}",
        "A",
        "a",
        "a\u{0}b",
        "a/",
        "z",
        "\u{7f}",
        "\u{80}",
        "é",
        "\u{ff}",
        "\u{ff}/",
        "日本",
        "\u{10ffff}",
    ];
    let mut by_bytes = expected.map(|c| c.as_bytes().to_vec());
    by_bytes.sort();
    assert_eq!(
        by_bytes,
        expected.map(|c| c.as_bytes().to_vec()),
        "the expectation itself is in byte order"
    );
    assert_eq!(b.list("o/").unwrap(), expected);
    let mut all: Vec<String> = names.iter().map(|n| format!("o/{n}")).collect();
    all.sort();
    assert_eq!(keys(&b.scan("o/", "o0", 100).unwrap()), all);
    assert_eq!(
        keys(&b.scan("o/\u{80}", "o/\u{10ffff}", 10).unwrap()),
        ["o/\u{80}", "o/é", "o/\u{ff}", "o/\u{ff}/x", "o/日本"]
    );
    assert_eq!(
        keys(&b.scan("o/a\u{0}", "o/a0", 10).unwrap()),
        ["o/a\u{0}b", "o/a/deep"],
        "NUL sorts first, inside keys too"
    );
    let nul = b.scan("o/\u{0}", "o/\u{1}", 10).unwrap();
    assert_eq!(keys(&nul), ["o/\u{0}"]);
    assert_eq!(nul[0].1, b"\0", "a NUL key keeps its value");
    assert_eq!(get(b, "o/日本").as_deref(), Some("日本"));
}

/// Paging with `scan` (limit, then continue after the last key) yields
/// every key of a range exactly once, in order.
pub fn range_scans_page_through_a_folder(b: Arc<dyn Backend>) {
    let b = &*b;
    let ops: Vec<Op> = (0..250)
        .map(|i| Op::put(format!("page/{i:03}"), format!("{i}")))
        .chain([Op::put("page0", "after"), Op::put("pag", "before")])
        .collect();
    b.apply(&ops).unwrap();
    let mut seen = Vec::new();
    let mut from = "page/".to_string();
    loop {
        let page = b.scan(&from, "page0", 64).unwrap();
        assert!(page.len() <= 64);
        let Some((last, _)) = page.last() else { break };
        from = format!("{last}\0");
        seen.extend(
            page.into_iter()
                .map(|(k, v)| (k, String::from_utf8(v).unwrap())),
        );
    }
    let expected: Vec<(String, String)> = (0..250)
        .map(|i| (format!("page/{i:03}"), format!("{i}")))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        keys(&b.scan("page/100", "page/105", 100).unwrap()),
        ["page/100", "page/101", "page/102", "page/103", "page/104"]
    );
}

/// Several threads apply batches at once: every batch lands whole (a
/// reader never sees half of one), each thread's batches land in its
/// order, and none is lost.
pub fn concurrent_writers_apply_whole_batches(b: Arc<dyn Backend>) {
    const THREADS: usize = 6;
    const BATCHES: usize = 25;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for pair in b.scan("cw/pair/", "cw/pair0", 100).unwrap().chunks(2) {
                    assert_eq!(pair.len(), 2, "both keys of a batch or neither");
                    assert_eq!(pair[0].1, pair[1].1, "half a batch: {:?}", keys(pair));
                }
            }
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                for i in 0..BATCHES {
                    let v = format!("{i}");
                    b.apply(&[
                        Op::put(format!("cw/pair/{t}/a"), v.as_str()),
                        Op::put(format!("cw/log/{t}/{i:02}"), v.as_str()),
                        Op::delete(format!("cw/log/{t}/gone")),
                        Op::put(format!("cw/pair/{t}/b"), v.as_str()),
                    ])
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(
        b.scan("cw/log/", "cw/log0", 10_000).unwrap().len(),
        THREADS * BATCHES
    );
    let last = (BATCHES - 1).to_string();
    for t in 0..THREADS {
        assert_eq!(get(&*b, &format!("cw/pair/{t}/a")), Some(last.clone()));
        assert_eq!(get(&*b, &format!("cw/pair/{t}/b")), Some(last.clone()));
    }
}

pub fn kind_is_named(b: Arc<dyn Backend>) {
    assert!(["inmem", "sqlite", "postgresql"].contains(&b.kind()));
}
