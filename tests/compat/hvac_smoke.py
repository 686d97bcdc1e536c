"""Drives a running pgsecrets server with the real `hvac` client.

Run by tests/it/hvac.rs with VAULT_ADDR and VAULT_TOKEN (root) set. Every
check compares values; any failure raises and exits non-zero.
"""
import json
import os
import sys

import hvac
import hvac.exceptions

addr = os.environ["VAULT_ADDR"]
root = hvac.Client(url=addr, token=os.environ["VAULT_TOKEN"])


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok:", what)


# Health: hvac's default is HEAD, which returns the raw response.
head = root.sys.read_health_status()
check(head.status_code == 200, "HEAD sys/health answers 200")
health = root.sys.read_health_status(method="GET")
check(health["initialized"] is True and health["sealed"] is False, "GET sys/health body")
check(root.sys.is_initialized() is True, "sys.is_initialized")
check(root.sys.is_sealed() is False, "sys.is_sealed")

check(root.is_authenticated(), "root token is authenticated")
check(not hvac.Client(url=addr, token="pgs.bogus").is_authenticated(), "a bogus token is not")

# Policies.
root.sys.create_or_update_policy(
    name="hvac-reader",
    policy='path "sys/mounts" { capabilities = ["read"] }\npath "database/info" { capabilities = ["read"] }',
)
check("hvac-reader" in root.sys.list_policies()["data"]["policies"], "policy listed")
check('sys/mounts' in root.sys.read_policy("hvac-reader")["data"]["rules"], "policy read back")
acl = root.sys.list_acl_policies()["data"]["keys"]
check("hvac-reader" in acl and "root" in acl, "sys.list_acl_policies")

# Token with that policy.
created = root.auth.token.create(policies=["hvac-reader"], ttl="1h")
token = created["auth"]["client_token"]
check(sorted(created["auth"]["policies"]) == ["default", "hvac-reader"], "token policies")
user = hvac.Client(url=addr, token=token)
check(user.is_authenticated(), "new token is authenticated")
me = user.auth.token.lookup_self()["data"]
check(me["id"] == token and 3590 <= me["ttl"] <= 3600, "lookup_self id and ttl")
renewed = user.auth.token.renew_self(increment="2h")
check(renewed["auth"]["lease_duration"] >= 7190, "renew_self extends")

# Mounts.
mounts = user.sys.list_mounted_secrets_engines()
check(mounts["data"]["database/"]["type"] == "database", "database/ is mounted")
root.sys.enable_secrets_engine("database", path="hvac-db2")
check("hvac-db2/" in root.sys.list_mounted_secrets_engines()["data"], "enable_secrets_engine")
root.sys.disable_secrets_engine("hvac-db2")
check("hvac-db2/" not in root.sys.list_mounted_secrets_engines()["data"], "disable_secrets_engine")

# Errors map to hvac's exception classes.
try:
    user.sys.create_or_update_policy(name="escalate", policy='path "*" { capabilities = ["sudo"] }')
    raise AssertionError("a write outside the policy was allowed")
except hvac.exceptions.Forbidden:
    print("ok: Forbidden for a path the policy does not grant")
try:
    root.adapter.get("/v1/database/no/such/route")
    raise AssertionError("an unknown route answered")
except hvac.exceptions.InvalidPath:
    print("ok: InvalidPath for an unknown route")
try:
    root.sys.create_or_update_policy(name="broken", policy='path "x" { capabilities = ["fly"] }')
    raise AssertionError("an invalid policy was accepted")
except hvac.exceptions.InvalidRequest as e:
    check("fly" in str(e), "InvalidRequest names the bad capability")

# Audit devices (the Rust side allowed API creation and gave a directory).
audit_dir = os.environ.get("PGSECRETS_AUDIT_DIR")
if audit_dir:
    log = os.path.join(audit_dir, "hvac-audit.log")
    root.sys.enable_audit_device("file", description="hvac", options={"file_path": log}, path="hvac-file")
    devices = root.sys.list_enabled_audit_devices()
    check(devices["data"]["hvac-file/"]["options"]["file_path"] == log, "sys.list_enabled_audit_devices")
    hashed = root.sys.calculate_hash(path="hvac-file", input_to_hash=root.token)
    digest = hashed["data"]["hash"]
    check(digest.startswith("hmac-sha256:"), "sys.calculate_hash")
    root.sys.list_mounted_secrets_engines()
    with open(log) as f:
        lines = [json.loads(line) for line in f]
    check(any(l["auth"].get("client_token") == digest for l in lines), "the log holds the token's hash, not the token")
    check(all(root.token not in json.dumps(l) for l in lines), "no token in clear")
    root.sys.disable_audit_device("hvac-file")
    check("hvac-file/" not in root.sys.list_enabled_audit_devices()["data"], "sys.disable_audit_device")

# Credentials and leases (the Rust side registered a cluster, a database and a role).
creds_path = os.environ.get("PGSECRETS_CREDS_PATH")
if creds_path:
    secret = root.read(creds_path)
    lease_id = secret["lease_id"]
    check(lease_id.startswith(creds_path + "/") and secret["renewable"], "read creds: leased secret")
    check(secret["data"]["username"].startswith("v-") and len(secret["data"]["password"]) >= 32, "read creds: username and password")
    looked = root.sys.read_lease(lease_id)["data"]
    check(looked["id"] == lease_id and looked["renewable"] is True, "sys.read_lease")
    renewed = root.sys.renew_lease(lease_id, increment=1200)
    check(renewed["lease_id"] == lease_id and renewed["lease_duration"] == 1200, "sys.renew_lease")
    listed = root.sys.list_leases(creds_path)["data"]["keys"]
    check(lease_id.rsplit("/", 1)[1] in listed, "sys.list_leases")
    root.sys.revoke_lease(lease_id)
    try:
        root.sys.read_lease(lease_id)
        raise AssertionError("a revoked lease can still be looked up")
    except hvac.exceptions.InvalidRequest:
        print("ok: sys.revoke_lease, and the lease is gone")
    os.environ["PGSECRETS_REVOKED_USER"] = secret["data"]["username"]
    print("revoked user:", secret["data"]["username"])

user.auth.token.revoke_self()
check(not user.is_authenticated(), "revoke_self ends the token")
print("hvac compatibility: all checks passed")
sys.exit(0)
