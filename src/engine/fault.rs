//! Fault injection for crash-safety tests.
//!
//! A test arms a named point for one cluster; when the engine reaches that
//! point for that cluster it stops there as if the process had died, leaving
//! storage and PostgreSQL exactly as a crash would. Points can only be armed
//! from Rust code in the same process, never over the API.

use std::collections::HashSet;
use std::sync::Mutex;

static ARMED: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// Arms `point` for `cluster` (one shot).
pub fn arm(point: &str, cluster: &str) {
    ARMED
        .lock()
        .expect("fault registry")
        .get_or_insert_with(HashSet::new)
        .insert((point.to_string(), cluster.to_string()));
}

/// Whether `point` is armed for `cluster`; disarms it.
pub fn hit(point: &str, cluster: &str) -> bool {
    ARMED
        .lock()
        .expect("fault registry")
        .as_mut()
        .map(|set| set.remove(&(point.to_string(), cluster.to_string())))
        .unwrap_or(false)
}
