// The smallest configuration the sidecar starts with, and what loadConfig says of one it refuses:
// the set-up of the unit tests of configuration variables.

import { ConfigError, loadConfig } from '../../src/config/config.js';

export const MINIMAL_ENV = { OIDC_ISSUER: 'https://auth.example.com/realms/coder', OIDC_ALLOWED_AZP: 'coder' };

/** The problems loadConfig reports for MINIMAL_ENV with `env` over it; [] when it loads. */
export function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...MINIMAL_ENV, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}
