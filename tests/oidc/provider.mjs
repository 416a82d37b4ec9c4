// A throwaway OpenID provider for the Custos tests (npm `oidc-provider`), bound to 127.0.0.1.
//
// Env:
//   OIDC_PORT           port to listen on
//   RP_REDIRECT         the Custos callback URL registered for client `custos`
//   OIDC_CLIENT_SECRET  the client secret of `custos`
//   OIDC_USERS_FILE     JSON {"name": {"password": "...", "email": "...", "groups": [...]}}, read
//                       at every sign-in so a test can change someone's groups between sign-ins
//   OIDC_GROUPS_IN_USERINFO=1  keep `groups` out of the ID token (Custos must ask /me)
//
// The login page is a plain form (input[name=login], input[name=password], a submit button); the
// consent step is skipped. PKCE is required for the confidential client.
import Provider from 'oidc-provider';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const PORT = Number(process.env.OIDC_PORT || 9080);
const RP = process.env.RP_REDIRECT || 'http://127.0.0.1:9081/ui/oidc/callback';
const SECRET = process.env.OIDC_CLIENT_SECRET || 'custos-secret';
const USERS_FILE = process.env.OIDC_USERS_FILE;
const ISSUER = `http://127.0.0.1:${PORT}`;
const users = () => (USERS_FILE ? JSON.parse(readFileSync(USERS_FILE, 'utf8')) : {});
const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: 'custos', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [RP], response_types: ['code'], grant_types: ['authorization_code'],
  }],
  pkce: { required: () => true },
  jwks: { keys: [{ ...jwk, kid: 'test-key-1', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
  conformIdTokenClaims: process.env.OIDC_GROUPS_IN_USERINFO === '1',
  findAccount: (ctx, id) => {
    const user = users()[id];
    return user && { accountId: id, claims: () => ({ sub: id, email: user.email, groups: user.groups }) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: { devInteractions: { enabled: false } },
});

provider.use(async (ctx, next) => {
  if (!/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const { params } = await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = '<!doctype html><title>Test IdP</title><form method="post">'
      + '<input name="login" autocomplete="username"><input name="password" type="password">'
      + '<button type="submit">Sign in</button></form>';
    return;
  }
  let raw = '';
  for await (const chunk of ctx.req) raw += chunk;
  const form = new URLSearchParams(raw);
  const login = form.get('login');
  const user = users()[login];
  if (!user || user.password !== form.get('password')) { ctx.status = 401; ctx.body = 'invalid credentials'; return; }
  const grant = new provider.Grant({ accountId: login, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  await provider.interactionFinished(ctx.req, ctx.res,
    { login: { accountId: login }, consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: false });
});

provider.listen(PORT, '127.0.0.1', () => console.log(`oidc-provider ready on ${ISSUER}`));
