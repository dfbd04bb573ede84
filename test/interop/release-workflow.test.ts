import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { findTool } from '../helpers/tools.js';

// .github/workflows/release.yml only runs on GitHub (a tag push): here actionlint checks it
// (syntax, expressions, action inputs, permissions), and the test reads what it promises.

const FILE = '.github/workflows/release.yml';
const text = readFileSync(new URL(`../../${FILE}`, import.meta.url), 'utf8');
const workflow = YAML.parse(text) as {
  on: Record<string, unknown>;
  permissions: Record<string, string>;
  jobs: Record<
    string,
    {
      permissions: Record<string, string>;
      steps: { uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string> }[];
    }
  >;
};
const steps = Object.values(workflow.jobs).flatMap((job) => job.steps);
const step = (action: string) => steps.find((s) => s.uses?.startsWith(`${action}@`));

const actionlint = findTool('actionlint');

describe('the release workflow', () => {
  it.skipIf(!actionlint)('passes actionlint', () => {
    const run = spawnSync(actionlint!, ['-no-color', FILE], { encoding: 'utf8', cwd: new URL('../..', import.meta.url) });
    expect(run.stdout + run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('runs on version tags, with no permission unless a job asks for it', () => {
    expect(workflow.on).toEqual({ push: { tags: ['v[0-9]+.[0-9]+.[0-9]+'] } });
    expect(workflow.permissions).toEqual({});
    expect(workflow.jobs.image!.permissions).toEqual({ contents: 'read', packages: 'write', 'id-token': 'write' });
    expect(workflow.jobs.release!.permissions).toEqual({ contents: 'write' });
  });

  it('pins every action to a commit', () => {
    const uses = steps.flatMap((s) => (s.uses ? [s.uses] : []));
    expect(uses.length).toBeGreaterThan(5);
    for (const action of uses) expect(action).toMatch(/^[\w.-]+\/[\w.-]+@[0-9a-f]{40}$/);
  });

  it('builds for amd64 and arm64 with an SBOM and provenance attached, never tagging latest', () => {
    expect(step('docker/setup-qemu-action')?.with).toEqual({ platforms: 'arm64' });
    expect(step('docker/build-push-action')?.with).toMatchObject({
      platforms: 'linux/amd64,linux/arm64',
      push: true,
      sbom: true,
      provenance: 'mode=max',
    });
    expect(step('docker/metadata-action')?.with?.flavor).toBe('latest=false');
  });

  it('signs by digest with cosign keyless, checks the signature, and publishes tags and digest', () => {
    expect(step('sigstore/cosign-installer')).toBeDefined();
    const sign = steps.find((s) => s.run?.startsWith('cosign sign'))!;
    expect(sign.run).toContain('cosign sign --yes "${IMAGE}@${DIGEST}"');
    expect(sign.env?.DIGEST).toBe('${{ steps.build.outputs.digest }}');
    expect(steps.some((s) => s.run?.includes('cosign verify'))).toBe(true);
    expect(text).toContain('GITHUB_STEP_SUMMARY');
    expect(steps.find((s) => s.run?.includes('gh release create'))?.env).toMatchObject({
      DIGEST: '${{ needs.image.outputs.digest }}',
      TAGS: '${{ needs.image.outputs.tags }}',
    });
    // Values reach shell scripts through env, never ${{ }} inside the script (no injection).
    for (const s of steps) expect(s.run ?? '', s.run).not.toContain('${{');
  });
});
