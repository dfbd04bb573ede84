import { describe, expect, it } from 'vitest';
import { decide, factsOf, visible } from '../../src/mcp/policy/decide.js';
import { compileExpression } from '../../src/mcp/policy/compile.js';
import { PolicyGuard } from '../../src/mcp/policy/guard.js';
import { MCP_METHODS } from '../../src/mcp/messages.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { parsePolicy } from '../../src/mcp/policy/file.js';
import type { ClientMessage } from '../../src/mcp/guard.js';
import type { Identity } from '../../src/auth/verify.js';
import { createVerifier } from '../../src/auth/verify.js';
import { RemoteKeySet } from '../../src/auth/keyset.js';
import { loadConfig, trustedIssuers } from '../../src/config/config.js';
import { createLogger } from '../../src/observability/log.js';
import { startIssuer } from '../helpers/issuer.js';

// How rules decide (decide.ts's header), on the real parser and CEL evaluator.

const rules = (...list: [string, 'allow' | 'deny', string][]) =>
  parsePolicy(
    `rules:\n${list.map(([name, effect, when]) => `  - name: ${name}\n    effect: ${effect}\n    when: ${JSON.stringify(when)}\n`).join('')}`,
  ).rules!;
const message = (method: string, tool?: string, args?: Record<string, unknown>): ClientMessage => ({
  method,
  id: 1,
  params: undefined,
  tool,
  prompt: undefined,
  resource: undefined,
  arguments: args,
});
const ann: Identity = {
  user: 'ann',
  subject: 's-ann',
  email: undefined,
  groups: ['/alpha'],
  roles: ['auditor'],
  claims: { email_verified: true, azp: 'coder' },
};

describe('policy decisions', () => {
  it('allows server/discover to everyone, even against a deny rule that matches everything', () => {
    const policy = rules(['nobody', 'deny', 'true']);
    expect(decide(policy, message('server/discover'), ann)).toMatchObject({ allowed: true, rule: undefined });
    expect(decide(policy, message('initialize'), ann)).toMatchObject({ allowed: false, rule: 'nobody' });
  });

  it('passes subscriptions/listen as plumbing, judging each subscribed resource as resources/read of it', () => {
    const policy = rules(['alpha-docs', 'allow', 'mcp.method == "resources/read" && mcp.resource.startsWith("docs://alpha/")']);
    const listen = (notifications: unknown): ClientMessage => ({ ...message('subscriptions/listen'), params: { notifications } });
    expect(decide(policy, listen({ toolsListChanged: true }), ann)).toMatchObject({ allowed: true });
    expect(decide(policy, listen({ resourceSubscriptions: ['docs://alpha/a', 'docs://alpha/b'] }), ann)).toMatchObject({ allowed: true });
    const denied = decide(policy, listen({ resourceSubscriptions: ['docs://alpha/a', 'docs://bravo/x'] }), ann);
    expect(denied).toMatchObject({ allowed: false, subject: 'docs://bravo/x' });
    expect(denied.reason).toContain('subscription to "docs://bravo/x": no allow rule matches');
    expect(decide(policy, listen({ resourceSubscriptions: [7] }), ann)).toMatchObject({ allowed: false });
    expect(decide(policy, listen({ resourceSubscriptions: Array(101).fill('docs://alpha/a') }), ann)).toMatchObject({ allowed: false });
    expect(decide(rules(['no-listen', 'deny', 'mcp.method == "subscriptions/listen"']), listen({}), ann)).toMatchObject({
      allowed: false,
      rule: 'no-listen',
    });
    const guard = new PolicyGuard(policy, { mode: 'enforce' });
    const refusal = guard.judge(listen({ resourceSubscriptions: ['docs://bravo/x'] }), { identity: ann, sessionId: undefined });
    expect(refusal).toMatchObject({
      effect: 'deny',
      message: 'Forbidden: subscriptions/listen of resource "docs://bravo/x" is not allowed by the tool policy',
    });
  });

  it('hides a listed resource or template whose URI a read would be refused for (dot segments), even from a rule that allows its prefix', () => {
    const guard = new PolicyGuard(rules(['public', 'allow', 'mcp.resource.startsWith("file:///public/")']), { mode: 'enforce' });
    const caller = { identity: ann, sessionId: undefined };
    const resources = [{ uri: 'file:///public/a' }, { uri: 'file:///public/../secret' }, { uri: 'file:///public/%2e%2e/secret' }];
    expect(guard.rewriteResult(message('resources/list'), { resources }, caller)).toEqual({ resources: [{ uri: 'file:///public/a' }] });
    const resourceTemplates = [{ uriTemplate: 'file:///public/{name}' }, { uriTemplate: 'file:///public/../{name}' }];
    expect(guard.rewriteResult(message('resources/templates/list'), { resourceTemplates }, caller)).toEqual({
      resourceTemplates: [{ uriTemplate: 'file:///public/{name}' }],
    });
  });

  it('cuts the name a denial message repeats', () => {
    const guard = new PolicyGuard(rules(['none', 'deny', 'true']), { mode: 'enforce' });
    const decision = guard.judge(message('tools/call', 'x'.repeat(1_000_000)), { identity: ann, sessionId: undefined });
    expect(decision).toMatchObject({ effect: 'deny' });
    expect((decision as { message: string }).message.length).toBeLessThan(400);
    expect((decision as { message: string }).message).toContain('x…');
  });

  it('a deny rule that fails to evaluate denies a call (fail closed), but cannot block plumbing', () => {
    const policy = rules(
      ['everyone', 'allow', 'mcp.method == "tools/call"'],
      ['no-secrets', 'deny', 'mcp.arguments.table.startsWith("secret_")'],
    );
    expect(decide(policy, message('tools/call', 'query', { table: 'orders' }), ann)).toMatchObject({ allowed: true, rule: 'everyone' });
    expect(decide(policy, message('tools/call', 'query', {}), ann)).toMatchObject({ allowed: false, rule: 'no-secrets' });
    expect(decide(policy, message('initialize'), ann)).toMatchObject({ allowed: true, rule: undefined });
  });

  it('an allow rule that fails to evaluate does not allow; the first allow rule in file order decides', () => {
    const policy = rules(
      ['limit-small', 'allow', 'mcp.arguments.limit < 10'],
      ['auditors', 'allow', '"auditor" in roles'],
      ['verified', 'allow', 'jwt.email_verified == true'],
    );
    expect(decide(policy, message('tools/call', 'query', { limit: 5 }), ann)).toMatchObject({ allowed: true, rule: 'limit-small' });
    expect(decide(policy, message('tools/call', 'query', {}), ann)).toMatchObject({ allowed: true, rule: 'auditors' });
    expect(decide(policy, message('tools/call', 'query', {}), { ...ann, roles: [] })).toMatchObject({ allowed: true, rule: 'verified' });
    expect(decide(policy, message('tools/call', 'query', {}), { ...ann, roles: [], claims: {} })).toMatchObject({
      allowed: false,
      rule: undefined,
    });
  });

  it('lists a tool when a call could be allowed: argument conditions count as could-be-true, not as false', () => {
    const policy = rules(
      ['alpha-query', 'allow', '"/alpha" in groups && mcp.tool == "query" && !has(mcp.arguments.unsafe)'],
      ['forced-drop', 'deny', 'mcp.tool == "query" && mcp.arguments.force == true'],
      ['b-or-args', 'deny', 'mcp.tool == "b" || mcp.arguments.any == 1'],
      ['b-allowed', 'allow', 'mcp.tool in ["a", "b"]'],
    );
    const call = (tool: string) => message('tools/call', tool);
    expect(visible(policy, call('query'), ann)).toMatchObject({ allowed: true, rule: 'alpha-query' });
    expect(visible(policy, call('query'), { ...ann, groups: [] })).toMatchObject({ allowed: false });
    expect(visible(policy, call('a'), ann)).toMatchObject({ allowed: true, rule: 'b-allowed' });
    expect(visible(policy, call('b'), ann)).toMatchObject({ allowed: false, rule: 'b-or-args' });
    expect(decide(policy, message('tools/call', 'query', { force: true }), ann)).toMatchObject({ allowed: false, rule: 'forced-drop' });
    expect(decide(policy, message('tools/call', 'query', { unsafe: 1 }), ann)).toMatchObject({ allowed: false });
  });

  it('denies a tool call without a string name, whatever the rules say', () => {
    expect(decide(rules(['all', 'allow', 'true']), message('tools/call', undefined), ann)).toEqual({
      allowed: false,
      rule: undefined,
      reason: 'params.name of tools/call must be a string',
    });
  });
});

describe('string tests on an argument, decided in JS', () => {
  it('give what the CEL evaluator gives, errors included, for every kind of argument value', () => {
    const values: unknown[] = [
      'alpha_orders',
      'alpha_',
      'beta_alpha_',
      '',
      'ALPHA_x',
      7,
      0,
      null,
      true,
      ['alpha_'],
      { alpha_: 1 },
      '😀alpha_',
      'alpha_😀',
      '\u00e9alpha_',
    ];
    for (const call of ['startsWith("alpha_")', 'endsWith("alpha_")', 'contains("alpha_")', 'startsWith("")', 'startsWith("😀")']) {
      const fast = compileExpression(`mcp.arguments.table.${call}`);
      // The same test the JS path does not recognise (the receiver is an index, not a field): CEL evaluates it.
      const cel = compileExpression(`[mcp.arguments.table][0].${call}`);
      for (const value of [...values, undefined]) {
        const facts = factsOf(message('tools/call', 'query', value === undefined ? {} : { table: value }), ann, undefined);
        expect(fast.evaluate(facts), `${call} of ${JSON.stringify(value)}`).toBe(cel.evaluate(facts));
      }
    }
    // A name of Object.prototype is no argument.
    const facts = factsOf(message('tools/call', 'query', {}), ann, undefined);
    expect(compileExpression('mcp.arguments.toString.startsWith("f")').evaluate(facts)).toBe('error');
  });
});

describe('mcp_auth_policy_decisions_total', () => {
  it('labels a method as mcp_auth_mcp_messages_total does: every MCP method by name, any other as other', async () => {
    const metrics = createMetrics();
    const guard = new PolicyGuard(rules(['calls', 'allow', 'mcp.method == "tools/call"']), {
      mode: 'enforce',
      decisions: metrics.policyDecisions,
    });
    for (const method of [...MCP_METHODS, 'tools/invented']) guard.judge(message(method), { identity: ann, sessionId: undefined });
    const counted = (await metrics.policyDecisions.get()).values.filter((v) => v.value > 0).map((v) => v.labels.method);
    expect(new Set(counted)).toEqual(new Set([...MCP_METHODS, 'other']));
  });
});

describe('the identity a policy sees', () => {
  it("keeps roles and the claims less per-token ones only with a policy, shared across one user's tokens", async () => {
    const issuer = await startIssuer();
    await issuer.addKey();
    const keys = new RemoteKeySet({
      issuer: issuer.issuer,
      jwksUri: undefined,
      refreshMs: 3_600_000,
      cooldownMs: 30_000,
      maxStaleMs: 86_400_000,
      logger: createLogger('silent'),
    });
    await keys.start();
    try {
      const env = { OIDC_ISSUER: issuer.issuer, OIDC_ALLOWED_AZP: 'coder' };
      const claims = { preferred_username: 'ann', groups: ['/alpha'], realm_access: { roles: ['auditor'] } };
      const [t1, t2] = [await issuer.mint(claims), await issuer.mint(claims)];
      const verifier = (config: ReturnType<typeof loadConfig>) => createVerifier(config, [{ issuer: trustedIssuers(config)[0]!, keys }]);
      const plain = (await verifier(loadConfig(env))(t1)).identity;
      expect([plain.roles, plain.claims]).toEqual([undefined, undefined]);

      const verify = verifier(loadConfig({ ...env, POLICY_FILE: '/etc/policy/policy.yaml' }));
      const first = (await verify(t1)).identity;
      expect(first.roles).toEqual(['auditor']);
      expect(first.claims).toMatchObject({ preferred_username: 'ann', iss: issuer.issuer, azp: 'coder' });
      for (const perToken of ['exp', 'iat', 'jti']) expect(first.claims).not.toHaveProperty(perToken);
      expect((await verify(t2)).identity).toBe(first);
      const other = (await verify(await issuer.mint({ ...claims, groups: ['/bravo'] }))).identity;
      expect(other).not.toBe(first);

      // A claim named __proto__ stays a claim: it never becomes the prototype the rules read through.
      const proto = (await verify(await issuer.mint({ ...claims, ...(JSON.parse('{"__proto__":{"admin":true}}') as object) }))).identity;
      expect(Object.hasOwn(proto.claims!, '__proto__')).toBe(true);
      expect((proto.claims as Record<string, unknown>).admin).toBeUndefined();
      const rule = compileExpression('jwt.preferred_username == "ann" && !("admin" in jwt)');
      expect(rule.evaluate(factsOf(message('tools/call', 'query', {}), proto, undefined))).toBe(true);
    } finally {
      keys.close();
      await issuer.close();
    }
  });
});

describe('scopes and the token in rules', () => {
  const scoped = parsePolicy(`rules:
  - name: alpha-reads
    effect: allow
    when: '"/alpha" in groups && mcp.tool == "query"'
  - name: alpha-drops-with-write
    effect: allow
    when: '"/alpha" in groups && mcp.tool == "drop"'
    scopes: [datastore.write, datastore.admin]
  - name: anyone-drops-from-partners
    effect: allow
    when: 'token.iss == "https://idp.example/realms/partners" && mcp.tool == "drop"'
`).rules!;

  it('an allow rule with scopes allows only a token holding them all; otherwise the call is refused for scopes alone', () => {
    const writer = { ...ann, scopes: ['openid', 'datastore.write', 'datastore.admin'] };
    expect(decide(scoped, message('tools/call', 'drop'), writer)).toMatchObject({
      allowed: true,
      rule: 'alpha-drops-with-write',
      scopes: ['datastore.write', 'datastore.admin'],
    });
    expect(decide(scoped, message('tools/call', 'drop'), { ...ann, scopes: ['openid', 'datastore.write'] })).toEqual({
      allowed: false,
      rule: 'alpha-drops-with-write',
      reason: 'allow rule "alpha-drops-with-write" matches but the token lacks the scope datastore.admin',
      scopes: ['datastore.write', 'datastore.admin'],
    });
    // Not in /alpha: no rule would allow it, whatever the scopes: an ordinary denial, nothing to step up to.
    expect(decide(scoped, message('tools/call', 'drop'), { ...ann, groups: [], scopes: [] })).toEqual({
      allowed: false,
      rule: undefined,
      reason: 'no allow rule matches',
    });
    expect(decide(scoped, message('tools/call', 'query'), { ...ann, scopes: [] })).toMatchObject({ allowed: true, rule: 'alpha-reads' });
  });

  it('another allow rule without scopes still allows; a tool reachable after a step-up is listed', () => {
    const partner = { ...ann, issuer: 'https://idp.example/realms/partners', scopes: [] };
    expect(decide(scoped, message('tools/call', 'drop'), partner)).toMatchObject({ allowed: true, rule: 'anyone-drops-from-partners' });
    expect(visible(scoped, message('tools/call', 'drop'), { ...ann, scopes: [] })).toMatchObject({ allowed: true });
    expect(factsOf(message('ping'), partner, undefined).token).toEqual({ iss: 'https://idp.example/realms/partners', scopes: [], cnf: {} });
    // A DPoP-bound token: its key's thumbprint in token.cnf.
    const jkt = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';
    expect(factsOf(message('ping'), { ...partner, jkt }, undefined).token.cnf).toEqual({ jkt });
  });

  it('reads token.scopes in a when, and refuses scopes on a deny rule, a bad scope list or an unknown token field', () => {
    const policy = rules(['writers', 'allow', '"datastore.write" in token.scopes']);
    expect(decide(policy, message('tools/call', 'x'), { ...ann, scopes: ['datastore.write'] })).toMatchObject({ allowed: true });
    expect(decide(policy, message('tools/call', 'x'), ann)).toMatchObject({ allowed: false });
    expect(() => parsePolicy('rules:\n  - name: d\n    effect: deny\n    when: "true"\n    scopes: [a]\n')).toThrow(
      /policy:2:5: scopes: belongs on allow rules/,
    );
    expect(() => parsePolicy('rules:\n  - name: a\n    effect: allow\n    when: "true"\n    scopes: ["has space"]\n')).toThrow(
      /scopes must be a non-empty list of scope names/,
    );
    expect(() => parsePolicy('rules:\n  - name: a\n    effect: allow\n    when: token.sub == "x"\n')).toThrow(
      /token has no field sub: it has iss, scopes/,
    );
    expect(() => parsePolicy('rules:\n  - name: a\n    effect: allow\n    when: token.iss == 1\n')).toThrow(/token.iss is a string/);
  });
});
