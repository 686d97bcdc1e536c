//! Every difference from OpenBao the differential tests accept, in one
//! place. Each entry says why and where the difference is documented; the
//! README's "Compatibility with Vault" section lists the same groups.
//!
//! An entry applies to differences whose case matches `case` (a glob: `*`
//! is any run of characters; cases are `<suite>:<who> <METHOD> <path>`)
//! and whose aspect is `aspect` and whose description matches `differs`
//! (also a glob). A difference where pgsecrets allowed what OpenBao denied
//! is never accepted, whatever this list says, and an entry that matched
//! nothing in its suite's run fails that suite.

pub struct Entry {
    pub case: &'static str,
    pub aspect: &'static str,
    pub differs: &'static str,
    pub reason: &'static str,
    pub documented: &'static str,
}

const README: &str = "README.md, Compatibility with Vault";

pub const ALLOW_LIST: &[Entry] = &[
    // What pgsecrets adds to the unauthenticated status endpoints.
    Entry {
        case: "corpus:* GET sys/health*",
        aspect: "keys",
        differs: "only pgsecrets: [clock_skew_ms echo_duration_ms enterprise irrevocable_leases performance_standby]",
        reason: "HashiCorp Vault's health fields (vaultrs requires performance_standby), and pgsecrets' count of irrevocable leases",
        documented: README,
    },
    Entry {
        case: "corpus:* GET sys/seal-status",
        aspect: "keys",
        differs: "only pgsecrets: [build_date]",
        reason: "HashiCorp Vault sends build_date; OpenBao does not",
        documented: README,
    },
    Entry {
        case: "corpus:* GET sys/leader*",
        aspect: "keys",
        differs: "only pgsecrets: [active_time is_self leader_address leader_cluster_address performance_standby performance_standby_last_remote_wal]",
        reason: "HashiCorp Vault sends every leader field even without HA; OpenBao omits them",
        documented: README,
    },
    // The engines: pgsecrets has only database/.
    Entry {
        case: "corpus:Root GET sys/mounts",
        aspect: "keys",
        differs: "only openbao: [cubbyhole/ identity/ secret/]",
        reason: "pgsecrets has no cubbyhole, identity or kv engine",
        documented: README,
    },
    Entry {
        case: "corpus:Root GET sys/mounts",
        aspect: "data",
        differs: "only openbao: [cubbyhole/ identity/ secret/]",
        reason: "pgsecrets has no cubbyhole, identity or kv engine",
        documented: README,
    },
    // Policies: HashiCorp Vault's shape.
    Entry {
        case: "corpus:Root GET sys/polic*",
        aspect: "data",
        differs: "only openbao: [allow_slashes_in_identity_templates allow_wildcards_in_identity_templates cas_required*version]",
        reason: "OpenBao's policy versioning (cas_required, version, modified) and identity templates; pgsecrets answers HashiCorp Vault's {name, policy}",
        documented: README,
    },
    Entry {
        case: "corpus:Root GET sys/policy/*",
        aspect: "keys",
        differs: "only openbao: [allow_slashes_in_identity_templates allow_wildcards_in_identity_templates cas_required*version]",
        reason: "the same OpenBao-only fields, repeated at the top level of the legacy answer",
        documented: README,
    },
    Entry {
        case: "corpus:Root LIST sys/policy/nothing",
        aspect: "status",
        differs: "openbao 200, pgsecrets 404",
        reason: "an empty list is 404 on every pgsecrets route (clients' not-found); Vault's legacy prefix list answers 200 {\"policies\": null}",
        documented: "routes/sys.md, sys/policy/{name}",
    },
    // Wrapping.
    Entry {
        case: "corpus:Root * X-Vault-Wrap-TTL: *",
        aspect: "status",
        differs: "openbao 200, pgsecrets 400",
        reason: "pgsecrets has no response wrapping: it refuses a request asking for it (after the ACL check) rather than answer unwrapped",
        documented: README,
    },
    // Tokens.
    Entry {
        case: "corpus:* GET auth/token/lookup-self?help=1",
        aspect: "keys",
        differs: "only openbao: [id]",
        reason: "OpenBao's token-store help echoes the caller's token as `id`; pgsecrets never echoes a token",
        documented: README,
    },
    Entry {
        case: "token-creation:* {\"id\":*} warnings",
        aspect: "value",
        differs: "openbao [\"Supplying a custom ID for the token uses the weaker SHA1 hashing*\"], pgsecrets null",
        reason: "pgsecrets hashes every token, chosen ids included, with SHA-256: there is nothing to warn about",
        documented: README,
    },
];
