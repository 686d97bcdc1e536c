// Drives a running pgsecrets server with the real `node-vault` client.
//
// Run by tests/it/node_vault.rs with VAULT_ADDR, VAULT_TOKEN (root),
// PGSECRETS_CREDS_PATH and PGSECRETS_VERSION set, and NODE_PATH pointing at
// the node_modules holding node-vault. Two phases, so that the Rust side can
// look at pg_roles in between:
//
//   node node_vault_smoke.js          every check; issues a user and prints
//                                     `issued: {"lease_id":…,"username":…}`
//   node node_vault_smoke.js revoke   revokes PGSECRETS_LEASE_ID
//
// Every check compares values; any failure exits non-zero.
'use strict';

const nodeVault = require('node-vault');

const endpoint = process.env.VAULT_ADDR;
const rootToken = process.env.VAULT_TOKEN;
const credsPath = process.env.PGSECRETS_CREDS_PATH;
const root = nodeVault({ endpoint, token: rootToken });

function check(condition, what) {
    if (!condition) throw new Error(`check failed: ${what}`);
    console.log('ok:', what);
}

function sameList(a, b) {
    return JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
}

// The error node-vault rejects with, or a failure when the call succeeded.
async function rejection(promise, what) {
    try {
        await promise;
    } catch (e) {
        return e;
    }
    throw new Error(`check failed: ${what} succeeded`);
}

async function main() {
    // Health and seal status (no token needed).
    const health = await nodeVault({ endpoint }).health();
    check(health.initialized === true && health.sealed === false && health.standby === false,
        'health: initialised, unsealed, active');
    check(health.version === process.env.PGSECRETS_VERSION, `health: version ${health.version}`);
    check(Number.isInteger(health.server_time_utc) && health.server_time_utc > 1600000000,
        'health: server_time_utc is an integer time');
    const standbyOk = await root.health({ standbyok: true });
    check(standbyOk.initialized === true, 'health with ?standbyok=true');
    const seal = await root.status();
    check(seal.sealed === false && seal.initialized === true && seal.type === 'shamir', 'status (seal-status)');

    // Auth methods: the token store.
    const auths = await root.auths();
    check(auths.data['token/'].type === 'token', 'auths lists token/');

    // The root token looks itself up.
    const me = await root.tokenLookupSelf();
    check(me.data.id === rootToken, 'tokenLookupSelf: id');
    check(sameList(me.data.policies, ['root']) && me.data.ttl === 0, 'tokenLookupSelf: root policy, no expiry');

    // A policy (node-vault's addPolicy sends the legacy `rules` key) and a
    // token holding it; tokenCreate switches its client to the new token.
    const rules = 'path "database/creds/*" { capabilities = ["read"] }';
    await root.addPolicy({ name: 'nv-app', rules });
    const policy = await root.getPolicy({ name: 'nv-app' });
    check(policy.rules === rules, 'getPolicy returns the rules');
    const policies = await root.policies();
    check(policies.policies.includes('nv-app') && policies.policies.includes('root'), 'policies');

    const app = nodeVault({ endpoint, token: rootToken });
    const created = await app.tokenCreate({ policies: ['nv-app'], ttl: '1h' });
    check(sameList(created.auth.policies, ['default', 'nv-app']), 'tokenCreate: policies');
    check(created.auth.lease_duration === 3600 && created.auth.renewable === true, 'tokenCreate: ttl, renewable');
    check(app.token === created.auth.client_token && app.token !== rootToken, 'tokenCreate switched the client');
    const appSelf = await app.tokenLookupSelf();
    check(appSelf.data.id === app.token, 'app tokenLookupSelf: id');
    check(appSelf.data.ttl >= 3590 && appSelf.data.ttl <= 3600, `app tokenLookupSelf: ttl ${appSelf.data.ttl}`);
    check(sameList(appSelf.data.policies, ['default', 'nv-app']), 'app tokenLookupSelf: policies');
    const renewedSelf = await app.tokenRenewSelf({ increment: '2h' });
    check(renewedSelf.auth.lease_duration >= 7190, 'tokenRenewSelf extends');

    const accessors = await root.tokenAccessors();
    check(accessors.data.keys.includes(created.auth.accessor), 'tokenAccessors lists the new token');

    // Lists: the LIST verb, and GET ?list=1 for clients without custom verbs.
    const acl = await root.list('sys/policies/acl');
    check(acl.data.keys.includes('nv-app') && acl.data.keys.includes('root'), 'list (LIST verb)');
    const plain = nodeVault({ endpoint, token: rootToken, noCustomHTTPVerbs: true });
    const roles = await plain.list('database/roles');
    check(sameList(roles.data.keys, ['app']), 'list (GET ?list=1)');
    const noneYet = await rejection(root.list(`sys/leases/lookup/${credsPath}`), 'an empty list');
    check(noneYet.response.statusCode === 404, 'an empty list is a 404 rejection');

    // Help (?help=1).
    const help = await root.help(credsPath);
    check(typeof help.help === 'string' && help.help.length > 0, 'help');

    // Errors: 403 for a path the token's policy does not grant; 404 for no route.
    const denied = await rejection(app.read('database/roles/app'), 'a read outside the policy');
    check(denied.response.statusCode === 403, `403 for a path the policy does not grant (${denied.response.statusCode})`);
    check(/permission denied/.test(denied.message), `403 message: ${JSON.stringify(denied.message)}`);
    const missing = await rejection(root.read('database/no/such/route'), 'a read of an unknown route');
    check(missing.response.statusCode === 404, '404 for an unknown route');

    // Credentials under a lease, read with the app token.
    const secret = await app.read(credsPath);
    check(secret.lease_id.startsWith(`${credsPath}/`) && secret.renewable === true, 'read creds: leased secret');
    check(secret.lease_duration === 600, 'read creds: lease_duration is the role TTL');
    const d = secret.data;
    check(d.username.startsWith('v-app-') && d.password.length >= 32, 'read creds: username, password');
    check(typeof d.host === 'string' && Number.isInteger(d.port) && typeof d.database === 'string',
        'read creds: host, port, database');
    check(d.connection_url === `postgresql://${d.username}:${d.password}@${d.host}:${d.port}/${d.database}?sslmode=disable`,
        'read creds: connection_url');
    const listed = await root.list(`sys/leases/lookup/${credsPath}`);
    check(listed.data.keys.includes(secret.lease_id.split('/').pop()), 'list leases under the creds path');

    // Renew: generic write, and node-vault's renew command (PUT), both with
    // the app token (the default policy allows renewal).
    const renewed = await app.write('sys/leases/renew', { lease_id: secret.lease_id, increment: 1200 });
    check(renewed.lease_id === secret.lease_id && renewed.renewable === true && renewed.lease_duration === 1200,
        'write sys/leases/renew');
    const renewedAgain = await app.renew({ lease_id: secret.lease_id, increment: 900 });
    check(renewedAgain.lease_id === secret.lease_id && renewedAgain.lease_duration === 900, 'renew (PUT)');
    const lookedUp = await app.write('sys/leases/lookup', { lease_id: secret.lease_id });
    check(lookedUp.data.id === secret.lease_id && lookedUp.data.ttl <= 900 && lookedUp.data.ttl >= 890,
        'write sys/leases/lookup');

    console.log(`issued: ${JSON.stringify({
        lease_id: secret.lease_id,
        username: d.username,
        password: d.password,
        database: d.database,
    })}`);

    // Revoke-orphan (sudo) ends a token.
    const spare = nodeVault({ endpoint, token: rootToken });
    await spare.tokenCreate({ ttl: '10m' });
    await root.tokenRevokeOrphan({ token: spare.token });
    const spareGone = await rejection(spare.tokenLookupSelf(), 'lookup-self after revoke-orphan');
    check(spareGone.response.statusCode === 403, 'tokenRevokeOrphan ends the token');

    // Revoke-self on another token (revoking the app token would revoke the
    // lease above with it).
    const other = nodeVault({ endpoint, token: rootToken });
    await other.tokenCreate({ ttl: '10m' });
    check((await other.tokenLookupSelf()).data.id === other.token, 'second token looks itself up');
    await other.tokenRevokeSelf();
    const revokedSelf = await rejection(other.tokenLookupSelf(), 'lookup-self after revoke-self');
    check(revokedSelf.response.statusCode === 403, 'tokenRevokeSelf ends the token');
}

async function revoke() {
    const leaseId = process.env.PGSECRETS_LEASE_ID;
    // node-vault accepts only 200 and 204: a 202 would reject here.
    const revoked = await root.write('sys/leases/revoke', { lease_id: leaseId });
    check(revoked === '' || revoked === undefined, 'write sys/leases/revoke: 204, no body');
    const gone = await rejection(root.write('sys/leases/lookup', { lease_id: leaseId }), 'lookup of a revoked lease');
    check(gone.response.statusCode === 400, 'the revoked lease is gone');
    const renewGone = await rejection(root.renew({ lease_id: leaseId }), 'renewal of a revoked lease');
    check(renewGone.response.statusCode === 400, 'a revoked lease cannot be renewed');
    // Revoking again succeeds, as in Vault.
    await root.revoke({ lease_id: leaseId });
    console.log('ok: revoke (PUT) of an unknown lease');
}

(process.argv[2] === 'revoke' ? revoke() : main()).then(
    () => console.log('node-vault compatibility: all checks passed'),
    (e) => {
        console.error(e.stack || e);
        if (e.response) console.error('response:', JSON.stringify(e.response));
        process.exit(1);
    },
);
