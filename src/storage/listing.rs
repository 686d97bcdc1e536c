//! The one-level listing walk shared by the backends.
//!
//! A backend feeds [`OneLevel::visit`] the keys `>= prefix` in ascending byte
//! order. Every direct child is visited; a subfolder's descendants are
//! streamed through for a few keys and then skipped with a seek to
//! `prefix + child + "0"` ('0' is '/' + 1, so that is the first key after
//! everything under `prefix + child + "/"`). Listing therefore costs about one
//! step per direct child plus one seek per large subfolder, however many keys
//! lie below: a million leases under one folder do not slow a listing of its
//! parent, and small folders are not paid for with a seek each.

/// After this many keys inside the same subfolder, seek past it.
const SEEK_AFTER: usize = 8;

/// What the backend should do after a visit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Feed the next key in order.
    Next,
    /// Restart the ordered walk at this key (inclusive).
    Seek(String),
    /// The keys have left the prefix: the listing is complete.
    Done,
}

pub(crate) struct OneLevel<'p> {
    prefix: &'p str,
    out: Vec<String>,
    /// Keys seen so far in the subfolder at the end of `out`.
    run: usize,
    visited: usize,
}

impl<'p> OneLevel<'p> {
    pub(crate) fn new(prefix: &'p str) -> Self {
        OneLevel {
            prefix,
            out: Vec::new(),
            run: 0,
            visited: 0,
        }
    }

    /// Where the walk starts.
    pub(crate) fn start(&self) -> &'p str {
        self.prefix
    }

    /// Consumes the next key in ascending order (callers guarantee key >= the
    /// last seek target, or >= prefix at first).
    pub(crate) fn visit(&mut self, key: &str) -> Step {
        self.visited += 1;
        // Keys sharing the prefix are contiguous in byte order, so the first
        // one without it ends the listing.
        let Some(rest) = key.strip_prefix(self.prefix) else {
            return Step::Done;
        };
        let Some(slash) = rest.find('/') else {
            if !rest.is_empty() {
                self.out.push(rest.to_owned());
            }
            self.run = 0;
            return Step::Next;
        };
        let folder = &rest[..=slash];
        if self.out.last().map(String::as_str) == Some(folder) {
            self.run += 1;
        } else {
            self.out.push(folder.to_owned());
            self.run = 1;
        }
        if self.run >= SEEK_AFTER {
            self.run = 0;
            Step::Seek(format!("{}{}0", self.prefix, &rest[..slash]))
        } else {
            Step::Next
        }
    }

    /// Keys fed in so far (tests check a listing did not read everything).
    pub(crate) fn visited(&self) -> usize {
        self.visited
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
        // The walk emits in order already; this is a linear-time safety net.
        self.out.sort_unstable();
        self.out.dedup();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(prefix: &str, keys: &[&str]) -> (Vec<String>, usize) {
        let mut keys: Vec<&str> = keys.to_vec();
        keys.sort_unstable();
        let mut l = OneLevel::new(prefix);
        let mut i = keys.partition_point(|k| *k < l.start());
        while i < keys.len() {
            match l.visit(keys[i]) {
                Step::Next => i += 1,
                Step::Seek(to) => i = keys.partition_point(|k| *k < to.as_str()),
                Step::Done => break,
            }
        }
        let visited = l.visited();
        (l.finish(), visited)
    }

    #[test]
    fn lists_leaves_and_folders_one_level_deep() {
        let (out, _) = walk(
            "p/",
            &[
                "a", "p/", "p/x", "p/b.c", "p/b/1", "p/b/2/3", "p/b0", "p//z", "q/1",
            ],
        );
        assert_eq!(out, ["/", "b.c", "b/", "b0", "x"]);
    }

    #[test]
    fn seeks_past_a_big_folder() {
        let keys: Vec<String> = (0..1000).map(|i| format!("p/big/{i:04}")).collect();
        let mut refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        refs.extend(["p/after", "p/big0", "p/big.x"]);
        let (out, visited) = walk("p/", &refs);
        assert_eq!(out, ["after", "big.x", "big/", "big0"]);
        assert!(visited < 20, "visited {visited} keys");
    }
}
