// Signs in to a running Custos demo in headless Chromium, following real redirects and cookies,
// and checks what a newcomer sees. Usage: node ui.mjs BASE_URL SECRET_FILE SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
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

await check('still no Content-Security-Policy violations', async () => {
  assert.deepEqual(violations, []);
});

await browser.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
