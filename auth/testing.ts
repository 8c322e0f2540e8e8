// Shared by the auth tests: an AuthConfig from partial input (schema defaults filled in) and a code catcher.
import assert from 'node:assert/strict';
import { authConfigSchema, type AuthConfig } from './config.js';
import { AuthError } from './gate.js';

export function authConfig(input: Record<string, unknown>): AuthConfig {
  return authConfigSchema.parse({ enabled: true, ...input });
}

/** Awaits `p` and returns the AuthError it rejected with (fails the test on success or another error). */
export async function rejection(p: Promise<unknown>): Promise<AuthError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AuthError, `expected an AuthError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the promise to reject with an AuthError');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
