// Signs in to a running Custos demo in headless Chromium, following real redirects and cookies,
// and checks what a newcomer sees. Usage: node ui.mjs BASE_URL SECRET_FILE SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

const [base, secretFile, shots] = process.argv.slice(2);
const secret = readFileSync(secretFile, 'utf8').trim();
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let passed = 0;
let failed = 0;
async function check(name, fn) {
  try { await fn(); passed++; console.log(`ok - ${name}`); }
  catch (e) { failed++; console.log(`not ok - ${name}\n  ${e.message.split('\n').join('\n  ')}`); }
}

const page = await browser.newPage();
const violations = [];
page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });

await check('an anonymous visit is sent to the sign-in page', async () => {
  const response = await page.goto(`${base}/ui`);
  assert.equal(new URL(page.url()).pathname, '/ui/login');
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
});

await check('a wrong secret is refused with a message', async () => {
  await page.fill('#secret', 'csb_not-a-real-secret');
  await Promise.all([page.waitForLoadState(), page.click('button[type=submit]')]);
  assert.equal(new URL(page.url()).pathname, '/ui/login');
  assert.match(await page.textContent('.error'), /not accepted/);
});

await check('the one-time secret signs in and lists the demo model', async () => {
  await page.goto(`${base}/ui/login`);
  await page.fill('#secret', secret);
  await Promise.all([page.waitForURL(`${base}/ui`), page.click('button[type=submit]')]);
  assert.match(await page.textContent('table.models'), /demo-fraud/);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'custos_session');
  assert.ok(session, 'session cookie set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  await page.screenshot({ path: `${shots}/models.png`, fullPage: true });
});

await check('the model page shows traffic and a drift table that flags the drifted features', async () => {
  await Promise.all([page.waitForLoadState(), page.click('a[href="/ui/models/demo-fraud"]')]);
  assert.ok(await page.isVisible('svg.chart'), 'volume chart');
  const drift = await page.textContent('table.drift');
  for (const f of ['amount', 'country', 'device', 'fraud_score']) assert.match(drift, new RegExp(f));
  const rows = await page.$$eval('table.drift tbody tr', (trs) => trs.map((tr) => tr.innerText));
  const verdict = (name) => rows.find((r) => r.startsWith(name + '\t'));
  assert.match(verdict('amount'), /drift/, 'amount drifted');
  assert.match(verdict('device'), /drift/, 'device drifted');
  assert.match(verdict('account_age_days'), /\tok/, 'account age stable');
  // The demo defines two alert rules; the card lists firing/pending ones or says all are quiet.
  const alerts = await page.textContent('section.card:has(h2:text-is("Alerts"))');
  assert.match(alerts, /rules are quiet|firing|pending/, 'alerts card');
  assert.ok(!/customer\d+@example\.com/.test(await page.content()), 'no e-mail address on the page');
  await page.screenshot({ path: `${shots}/model.png`, fullPage: true });
});

await check('no Content-Security-Policy violations', async () => {
  assert.deepEqual(violations, []);
});

await check('sign-out ends the session on the server', async () => {
  const cookie = (await page.context().cookies()).find((c) => c.name === 'custos_session');
  await Promise.all([page.waitForURL(`${base}/ui/login`), page.click('form.logout button')]);
  const replay = await fetch(`${base}/ui`, { headers: { cookie: `custos_session=${cookie.value}` }, redirect: 'manual' });
  assert.equal(replay.status, 303);
  assert.equal(replay.headers.get('location'), '/ui/login');
});

// The auditor: a separate person with the auditor role, signed in with a password.
const api = async (method, path, body) => {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.text() };
};

await check('an auditor signs in and sees the audit log verified against signed checkpoints', async () => {
  const created = await api('POST', '/api/v1/users', {
    name: 'ada-auditor', password: 'correct horse battery staple',
    roles: [{ role: 'auditor', model: '*' }],
  });
  assert.equal(created.status, 201, created.body);
  // A second configuration version, so there is something to compare.
  const put = await api('PUT', '/api/v1/models/demo-fraud/monitoring?reason=browser%20test',
    { drift: { drift_share: 0.4, exclude: ['customer_email'] } });
  assert.equal(put.status, 200, put.body);
  await page.goto(`${base}/ui/login`);
  await page.fill('#username', 'ada-auditor');
  await page.fill('#secret', 'correct horse battery staple');
  await Promise.all([page.waitForURL(`${base}/ui`), page.click('button[type=submit]')]);
  await Promise.all([page.waitForLoadState(), page.click('#audit-link')]);
  assert.equal(new URL(page.url()).pathname, '/ui/audit');
  assert.ok(await page.isVisible('#verified'), await page.textContent('#verification'));
  assert.match(await page.textContent('#audit-log'), /user\.create/);
  await page.fill('input[name=action]', 'auth.');
  await Promise.all([page.waitForLoadState(), page.click('form.filters button')]);
  assert.match(await page.textContent('#audit-log'), /auth\.sign_in/);
  assert.doesNotMatch(await page.textContent('#audit-log'), /monitoring\.update/);
  await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });
});

await check('the auditor diffs two configuration versions and cannot change anything', async () => {
  await page.goto(`${base}/ui/models/demo-fraud/history`);
  const diff = await page.textContent('table.diff');
  assert.match(diff, /drift_share/);
  assert.match(await page.textContent('#versions'), /browser test/);
  await page.screenshot({ path: `${shots}/history.png`, fullPage: true });
  // The page itself cannot script a request (the CSP forbids it), so replay the browser's own
  // session cookie from outside, as an attacker holding it would.
  const cookie = (await page.context().cookies()).find((c) => c.name === 'custos_session');
  const r = await fetch(`${base}/api/v1/models/demo-fraud/monitoring`, {
    method: 'PUT',
    headers: { cookie: `custos_session=${cookie.value}`, 'content-type': 'application/json' },
    body: JSON.stringify({ drift: { drift_share: 0.99 } }),
  });
  const status = r.status;
  assert.equal(status, 403);
});

// Single sign-on through a real OpenID provider (tests/oidc/provider.mjs, started by run.sh).
// What the IdP's groups grant is compared with what a local user bound to the same roles gets.
const usersFile = process.env.OIDC_USERS_FILE;
const idpPeople = (groups) => writeFileSync(usersFile, JSON.stringify({
  alice: { password: 'alice-pw', email: 'alice@example.test', groups },
}));
const grantsOf = async (request) => {
  const r = await request.get(`${base}/api/v1/whoami`);
  assert.equal(r.status(), 200);
  return (await r.json()).grants.sort();
};
const twinGrants = async (name, roles) => {
  const created = await api('POST', '/api/v1/users', { name, password: 'correct horse battery staple', roles });
  assert.equal(created.status, 201, created.body);
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await p.goto(`${base}/ui/login`);
  await p.fill('#username', name);
  await p.fill('#secret', 'correct horse battery staple');
  await Promise.all([p.waitForURL(`${base}/ui`), p.click('button[type=submit]')]);
  const grants = await grantsOf(ctx.request);
  await ctx.close();
  return grants;
};
// The first time the provider asks for the password; later its own session answers at once.
const ssoSignIn = async (p, idpSessionOpen = false) => {
  await p.goto(`${base}/ui/login`);
  if (idpSessionOpen) {
    await Promise.all([p.waitForURL(`${base}/ui`), p.click('#sso')]);
    return;
  }
  await Promise.all([p.waitForSelector('input[name=login]'), p.click('#sso')]);
  assert.ok(!p.url().startsWith(base), `at the identity provider: ${p.url()}`);
  await p.fill('input[name=login]', 'alice');
  await p.fill('input[name=password]', 'alice-pw');
  await Promise.all([p.waitForURL(`${base}/ui`), p.click('button[type=submit]')]);
};
const scientist = { role: 'data-scientist', model: 'demo-fraud' };
const auditor = { role: 'auditor', model: '*' };
const ssoContext = await browser.newContext();
const sso = await ssoContext.newPage();
sso.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });

await check('a person signs in through the OpenID provider and gets exactly the roles of their groups', async () => {
  assert.ok(usersFile, 'OIDC_USERS_FILE is set by run.sh');
  idpPeople(['ml-team', 'compliance']);
  await ssoSignIn(sso);
  assert.match(await sso.textContent('table.models'), /demo-fraud/);
  const session = (await ssoContext.cookies()).find((c) => c.name === 'custos_session');
  assert.equal(session.sameSite, 'Strict');
  assert.ok(!(await ssoContext.cookies()).some((c) => c.name === 'custos_oidc'), 'binding cookie cleared');
  assert.deepEqual(await grantsOf(ssoContext.request), await twinGrants('twin-both', [scientist, auditor]));
  const audit = await sso.goto(`${base}/ui/audit`);
  assert.equal(audit.status(), 200);
  await sso.screenshot({ path: `${shots}/sso-audit.png`, fullPage: true });
});

await check('removed from a group at the provider, the next sign-in lacks that role', async () => {
  idpPeople(['ml-team']);
  await sso.goto(`${base}/ui`);
  await Promise.all([sso.waitForURL(`${base}/ui/login`), sso.click('form.logout button')]);
  await ssoSignIn(sso, true);
  assert.deepEqual(await grantsOf(ssoContext.request), await twinGrants('twin-scientist', [scientist]));
  const audit = await sso.goto(`${base}/ui/audit`);
  assert.equal(audit.status(), 403);
  const model = await sso.goto(`${base}/ui/models/demo-fraud`);
  assert.equal(model.status(), 200);
});

await check('still no Content-Security-Policy violations', async () => {
  assert.deepEqual(violations, []);
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
